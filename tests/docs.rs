//! Every `bertkit` command in a shell block (```sh) of the README and docs/ is one a user can type:
//! each is given to the binary with `--help` after its flags, so clap checks every flag and
//! value (an unknown or renamed flag, a value out of range) without running the job. `text`
//! blocks (synopses with placeholders) are not commands.

mod common;

use std::path::{Path, PathBuf};

/// The Markdown files a user reads: the README and every page of docs/.
fn documents() -> Vec<PathBuf> {
    let repo = common::repo();
    let mut files = vec![repo.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The lines of each ```sh block, continuation lines joined, with the line number each starts on.
fn shell_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let (mut in_sh, mut pending): (bool, Option<(usize, String)>) = (false, None);
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && (trimmed == "```sh" || trimmed == "```bash");
            continue;
        }
        if !in_sh {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        joined.push_str(trimmed.trim_end_matches('\\').trim_end());
        joined.push(' ');
        if trimmed.ends_with('\\') {
            pending = Some((start, joined));
        } else {
            out.push((start, joined));
        }
    }
    out
}

/// A shell line's words, quotes removed, split into commands at `|`, `&&`, `;` and `&`; a `#`
/// outside quotes ends the line.
fn commands(line: &str) -> Vec<Vec<String>> {
    let (mut commands, mut words, mut word) = (vec![], vec![], String::new());
    let (mut quote, mut in_word) = (None::<char>, false);
    let mut chars = line.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => (quote, in_word) = (Some(c), true),
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            (None, '|' | ';' | '&') => {
                end_word(&mut words, &mut word, &mut in_word);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                commands.push(std::mem::take(&mut words));
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    commands.push(words);
    commands
}

/// bertkit's arguments in a command (`bertkit ...`, `target/release/bertkit ...`, after
/// `VAR=value` assignments or `echo ... |`); None for other programs.
fn bertkit_args(words: &[String]) -> Option<Vec<String>> {
    let at = words.iter().position(|w| !w.contains('=') || w.starts_with('-'))?;
    (Path::new(&words[at]).file_name()? == "bertkit").then(|| words[at + 1..].to_vec())
}

/// Shell variables a document sets (`s="..."`, `for n in 1 2 4; do`: the first value), so that
/// `$n` reaches bertkit as a value it can check.
#[derive(Default)]
struct Variables(std::collections::HashMap<String, String>);

impl Variables {
    /// Records what `words` assign; true when that is all they do.
    fn learn(&mut self, words: &[String]) -> bool {
        if let [f, name, i, first, ..] = words
            && f == "for"
            && i == "in"
        {
            self.0.insert(name.clone(), first.clone());
            return true;
        }
        let assignments: Vec<(&str, &str)> = words.iter().filter_map(|w| w.split_once('=')).collect();
        let all = !words.is_empty() && assignments.len() == words.len() && !words[0].starts_with('-');
        if all {
            self.0.extend(assignments.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
        }
        all
    }

    /// `$name` and `${name}` replaced where the document set them.
    fn expand(&self, word: &str) -> String {
        let mut out = word.to_string();
        for (name, value) in &self.0 {
            out = out.replace(&format!("${{{name}}}"), value);
            let plain = format!("${name}");
            let mut at = 0;
            while let Some(i) = out[at..].find(&plain).map(|i| i + at) {
                let end = i + plain.len();
                if out[end..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                    at = end;
                    continue;
                }
                out.replace_range(i..end, value);
                at = i + value.len();
            }
        }
        out
    }
}

/// The argument lists to check: `launch`'s own flags and the command it starts, each alone.
fn to_check(args: Vec<String>) -> Vec<Vec<String>> {
    match args.iter().position(|a| a == "--") {
        Some(split) if args.first().map(String::as_str) == Some("launch") => {
            vec![args[..split].to_vec(), args[split + 1..].to_vec()]
        }
        _ => vec![args],
    }
}

#[test]
fn every_documented_command_parses() {
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(common::repo()).unwrap().display().to_string();
        let mut vars = Variables::default();
        for (line, shell) in shell_lines(&text) {
            let mut found = vec![];
            for words in commands(&shell) {
                let words: Vec<String> = words.iter().map(|w| vars.expand(w)).collect();
                if !vars.learn(&words) {
                    found.extend(bertkit_args(&words).into_iter().flat_map(to_check));
                }
            }
            for args in found {
                let with_help: Vec<&str> = args.iter().map(String::as_str).chain(["--help"]).collect();
                let out = common::bertkit(&with_help);
                assert!(
                    out.status.success(),
                    "{name}:{line}: `bertkit {}` does not parse:\n{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    // The README's tour alone has a dozen; fewer means the blocks were not found.
    assert!(checked >= 30, "only {checked} documented commands found");
    eprintln!("{checked} documented commands parse");
}

#[test]
fn the_shell_reader_splits_as_a_shell_does() {
    let got = commands(r#"echo "a | b" | bertkit predict --model 'runs/x y' && bertkit inspect m # note"#);
    assert_eq!(got[0], ["echo", "a | b"]);
    assert_eq!(got[1], ["bertkit", "predict", "--model", "runs/x y"]);
    assert_eq!(got[2], ["bertkit", "inspect", "m"]);
    assert_eq!(bertkit_args(&got[1]).unwrap(), ["predict", "--model", "runs/x y"]);
    assert_eq!(bertkit_args(&["A=1".into(), "target/release/bertkit".into(), "x".into()]).unwrap(), ["x"]);
    assert!(bertkit_args(&got[0]).is_none());
    let mut vars = Variables::default();
    assert!(vars.learn(&commands("for n in 2 4; do")[0]) && vars.learn(&commands("s='a b'")[0]));
    assert_eq!(vars.expand("$n-${s}-$nn"), "2-a b-$nn");
    let lines = shell_lines("text\n```sh\nbertkit a \\\n    --b c\n```\n```text\nbertkit zz\n```\n");
    assert_eq!(lines, [(3, "bertkit a --b c ".to_string())]);
}
