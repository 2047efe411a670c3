//! `bertkit serve` over real HTTP on the tiny model: answers equal to `bertkit predict` and
//! `bertkit embed`, TEI's request and response shapes, limits and faults answered with 4xx and
//! the server still up, batching accounted for in /metrics, SIGTERM finishing cleanly.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{bertkit, finetune_tiny, ok, rerank_scores, synthetic_csv, tiny_model, tiny_tagger, write_candidates};
use serde_json::{Value, json};

/// A server on a free port; killed when dropped (unless the test stopped it).
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(model: &Path, flags: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bertkit"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0", "--device", "cpu", "--threads", "1"])
            .args(["--precision", "fp32"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{line}"));
        Server { child, base: address.to_string() }
    }

    /// POSTs `body` (JSON text) to `route`: the status and the JSON answer.
    fn post(&self, route: &str, body: &str) -> (u16, Value) {
        let url = format!("{}{route}", self.base);
        let reply = ureq::post(&url).set("content-type", "application/json").send_string(body);
        let response = match reply {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{url}: {e}"),
        };
        let status = response.status();
        (status, serde_json::from_str(&response.into_string().unwrap()).unwrap())
    }

    fn get(&self, route: &str) -> String {
        ureq::get(&format!("{}{route}", self.base)).call().unwrap().into_string().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trained_classifier(dir: &Path) -> std::path::PathBuf {
    let train = dir.join("t.csv");
    synthetic_csv(&train, 24, 7);
    let out = dir.join("model");
    let run = bertkit(&finetune_tiny(&train, &out, &["--max-steps", "3", "--batch-size", "8"]));
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    out
}

#[test]
fn predict_answers_as_the_predict_command_and_survives_faults() {
    let tmp = tempfile::tempdir().unwrap();
    let model = trained_classifier(tmp.path());
    let server = Server::start(&model, &["--max-client-batch-size", "3", "--payload-limit", "4000", "--max-len", "32"]);
    let texts = ["the movie was good", "a bad plot"];

    // One text: every label, best first, probabilities as `bertkit predict` gives them.
    let (status, one) = server.post("/predict", &json!({"inputs": texts[0]}).to_string());
    assert_eq!(status, 200, "{one}");
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, texts.join("\n")).unwrap();
    let cli = bertkit(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--device",
        "cpu",
        "--precision",
        "fp32",
    ]);
    let cli: Vec<Value> =
        String::from_utf8_lossy(&cli.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let labels = one.as_array().unwrap();
    assert_eq!(labels[0]["label"], cli[0]["label"], "{one} {:?}", cli[0]);
    assert!(labels[0]["score"].as_f64().unwrap() >= labels[1]["score"].as_f64().unwrap());
    for l in labels {
        let want = cli[0]["probabilities"][l["label"].as_str().unwrap()].as_f64().unwrap();
        // Probabilities (scale 1) of the same model batched otherwise: rounding alone.
        let tol = common::Drift::forward(&tiny_model()).tolerance(1.0);
        assert!((l["score"].as_f64().unwrap() - want).abs() <= tol, "{l} vs {want}");
    }
    // A batch (TEI: a list of one-text lists) answers each in order, as a batch would alone.
    let (status, batch) = server.post("/predict", &json!({"inputs": [[texts[0]], [texts[1]]]}).to_string());
    assert_eq!(status, 200);
    assert_eq!(batch[0], one, "the same answer in a batch");
    assert_eq!(batch[1][0]["label"], cli[1]["label"]);
    // A pair is one sequence.
    assert_eq!(server.post("/predict", &json!({"inputs": ["a good film", "a bad film"]}).to_string()).0, 200);

    // Faults: each a JSON error with its status, and the server goes on.
    let long = "good ".repeat(60);
    let cases: [(&str, u16, &str); 6] = [
        ("{\"inputs\": ", 400, "JSON"),
        ("{\"inputs\": [[\"a\"], [\"b\"], [\"c\"], [\"d\"]]}", 422, "1 to 3"),
        ("{\"inputs\": [\"a\", \"b\", \"c\"]}", 422, "one text or a pair"),
        (&json!({"inputs": long}).to_string(), 413, "more than the 32"),
        (&json!({"inputs": "x".repeat(5000)}).to_string(), 413, "length limit"),
        ("{\"text\": \"a\"}", 422, "inputs"),
    ];
    for (body, want, says) in cases {
        let (status, error) = server.post("/predict", body);
        assert_eq!(status, want, "{body:.60}: {error}");
        assert!(error["error"].as_str().unwrap().contains(says), "{body:.60}: {error}");
        assert!(error["error_type"].is_string());
    }
    assert_eq!(server.post("/predict", &json!({"inputs": long, "truncate": true}).to_string()).0, 200);
    // A client that sends half a request and hangs up.
    let mut socket = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    socket.write_all(b"POST /predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"inp").unwrap();
    drop(socket);
    assert_eq!(server.post("/predict", &json!({"inputs": texts[1]}).to_string()).0, 200);
    assert!(server.get("/health").contains("ok"));
    assert_eq!(serde_json::from_str::<Value>(&server.get("/info")).unwrap()["task"], "classification");
}

#[test]
fn concurrent_requests_are_batched_and_counted_and_sigterm_ends_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = trained_classifier(tmp.path());
    let mut server = Server::start(&model, &[]);
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    server.post(
                        "/predict",
                        &json!({"inputs": [[format!("text number {i} was good")], ["bad"]]}).to_string(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|(status, a)| *status == 200 && a.as_array().unwrap().len() == 2), "{answers:?}");
    let metrics = server.get("/metrics");
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("bertkit_requests_total{route=\"/predict\",status=\"200\"}"), 16.0);
    assert_eq!(value("bertkit_batch_inputs_sum"), 32.0, "every input ran in exactly one batch");
    assert!(value("bertkit_batch_inputs_count") <= 16.0);
    assert_eq!(value("bertkit_request_duration_seconds_count{route=\"/predict\"}"), 16.0);

    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running 20 s after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn embed_and_fill_mask_answer_like_their_commands() {
    let model = tiny_model();
    let server = Server::start(&model, &["--task", "embed"]);
    let texts = ["the lessee shall repair", "a film"];
    let (status, vectors) = server.post("/embed", &json!({"inputs": texts}).to_string());
    assert_eq!(status, 200, "{vectors}");
    let cli = bertkit(&[
        "embed",
        model.to_str().unwrap(),
        "--text",
        texts[0],
        "--text",
        texts[1],
        "--pooling",
        "mean",
        "--normalize",
        "--device",
        "cpu",
    ]);
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    for (got, want) in vectors.as_array().unwrap().iter().zip(cli["embeddings"].as_array().unwrap()) {
        for (g, w) in got.as_array().unwrap().iter().zip(want["vector"].as_array().unwrap()) {
            // Unit vectors (scale 1) of the same model: rounding alone.
            let tol = common::Drift::forward(&model).tolerance(1.0);
            assert!((g.as_f64().unwrap() - w.as_f64().unwrap()).abs() <= tol, "{g} vs {w}");
        }
    }
    let (status, single) = server.post("/embed", &json!({"inputs": texts[1], "normalize": false}).to_string());
    assert_eq!((status, single.as_array().unwrap().len()), (200, 1), "TEI answers a list of vectors");
    drop(server);

    let server = Server::start(&model, &["--task", "fill-mask", "--top-k", "3"]);
    let (status, fills) = server.post("/fill-mask", &json!({"inputs": "the [MASK] shall repair"}).to_string());
    assert_eq!(status, 200, "{fills}");
    assert_eq!(fills[0].as_array().unwrap().len(), 3, "{fills}");
    let (status, error) = server.post("/fill-mask", &json!({"inputs": "no mask here"}).to_string());
    assert_eq!(status, 422);
    assert!(error["error"].as_str().unwrap().contains("[MASK]"), "{error}");
}

#[test]
fn a_tagger_answers_the_entities_of_the_predict_command() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_tagger(tmp.path());
    let server = Server::start(&model, &["--max-len", "64"]);
    let texts = ["John Smith lives in New York", "Acme Corp shall repair the premises in Paris"];
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, texts.join("\n")).unwrap();
    let m = model.to_str().unwrap();
    let cli = bertkit(&[
        "predict",
        "--model",
        m,
        "--input",
        input.to_str().unwrap(),
        "--max-len",
        "64",
        "--device",
        "cpu",
        "--precision",
        "fp32",
    ]);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let cli: Vec<Value> =
        String::from_utf8_lossy(&cli.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (status, one) = server.post("/predict", &json!({"inputs": texts[0]}).to_string());
    assert_eq!(status, 200, "{one}");
    assert!(!one.as_array().unwrap().is_empty(), "every tag is an entity: some are found");
    assert_eq!(one, cli[0]["entities"], "the server's entities are the command's");
    let (status, both) = server.post("/predict", &json!({"inputs": [[texts[0]], [texts[1]]]}).to_string());
    assert_eq!(status, 200);
    assert_eq!(both[1], cli[1]["entities"]);
    for e in both[1].as_array().unwrap() {
        let (start, end) = (e["start"].as_u64().unwrap() as usize, e["end"].as_u64().unwrap() as usize);
        assert_eq!(e["word"].as_str().unwrap(), &texts[1][start..end], "character offsets into the text");
    }
    assert_eq!(serde_json::from_str::<Value>(&server.get("/info")).unwrap()["task"], "token-classification");
}

/// The clients people point at a TEI server are answered: huggingface_hub's `InferenceClient`
/// (`POST /`, settings under `parameters`) and OpenAI's embeddings route (`POST /v1/embeddings`,
/// floats or base64, `dimensions`, `usage`), with the same vectors as `/embed`; and, where Python
/// is there, the real `InferenceClient` and `openai` clients.
#[test]
fn embedding_clients_of_huggingface_hub_and_openai_are_answered() {
    let model = tiny_model();
    let server = Server::start(&model, &["--task", "embed"]);
    let texts = ["the lessee shall repair", "a film"];
    let (_, raw) = server.post("/embed", &json!({"inputs": texts, "normalize": false}).to_string());
    let (_, unit) = server.post("/embed", &json!({"inputs": texts}).to_string());
    let hub = json!({"inputs": texts, "parameters": {"normalize": false, "prompt_name": null}});
    assert_eq!(server.post("/", &hub.to_string()), (200, raw.clone()), "the root answers /embed");
    let nested_wins = json!({"inputs": texts, "normalize": false, "parameters": {"normalize": true}});
    assert_eq!(server.post("/", &nested_wins.to_string()).1, unit, "parameters win over the top level");

    let (status, floats) = server.post("/v1/embeddings", &json!({"input": texts, "model": "m"}).to_string());
    assert_eq!(status, 200, "{floats}");
    assert_eq!((floats["object"].as_str(), floats["model"].as_str()), (Some("list"), Some("m")));
    let vectors: Vec<Vec<f32>> = (0..texts.len())
        .map(|i| {
            assert_eq!(
                (floats["data"][i]["index"].as_u64(), floats["data"][i]["object"].as_str()),
                (Some(i as u64), Some("embedding"))
            );
            floats["data"][i]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
        })
        .collect();
    // Unit vectors (scale 1) of the same forward pass, rounded to float32 here.
    let tol = common::Drift::forward(&model).tolerance(1.0);
    for (got, want) in vectors.iter().zip(unit.as_array().unwrap()) {
        for (g, w) in got.iter().zip(want.as_array().unwrap()) {
            assert!((*g as f64 - w.as_f64().unwrap()).abs() <= tol, "{g} vs {w}");
        }
    }
    // prompt_tokens: every text's tokens with the special ones, as `bertkit embed` counts them.
    let mut cli = vec!["embed", model.to_str().unwrap(), "--device", "cpu"];
    texts.iter().for_each(|t| cli.extend(["--text", t]));
    let cli: Value = serde_json::from_slice(&bertkit(&cli).stdout).unwrap();
    let tokens: u64 = cli["embeddings"].as_array().unwrap().iter().map(|e| e["tokens"].as_u64().unwrap()).sum();
    assert_eq!(floats["usage"], json!({"prompt_tokens": tokens, "total_tokens": tokens}));

    // base64: the same float32 values, little-endian, to the bit.
    let (_, encoded) = server.post("/v1/embeddings", &json!({"input": texts, "encoding_format": "base64"}).to_string());
    for (i, want) in vectors.iter().enumerate() {
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            encoded["data"][i]["embedding"].as_str().unwrap(),
        )
        .unwrap();
        let got: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(&got, want);
    }
    let (_, short) = server.post("/v1/embeddings", &json!({"input": texts[0], "dimensions": 8}).to_string());
    let short: Vec<f64> =
        short["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(short.len(), 8);
    assert!((short.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-6, "scaled back to unit length");
    let (status, error) = server.post("/v1/embeddings", &json!({"input": "x", "encoding_format": "hex"}).to_string());
    assert_eq!(status, 422);
    assert!(error["error"]["message"].as_str().unwrap().contains("encoding_format"), "{error}");
    let classifier = Server::start(&model, &["--task", "predict", "--max-len", "8"]);
    let long = "the movie was good and the plot was not bad at all";
    let nested = json!({"inputs": long, "parameters": {"truncate": true}}).to_string();
    let (status, answer) = classifier.post("/", &nested);
    assert_eq!((status, answer), classifier.post("/predict", &json!({"inputs": long, "truncate": true}).to_string()));
    assert_eq!(classifier.post("/", &json!({"inputs": long}).to_string()).0, 413, "not truncated unless asked");
    drop(classifier);
    // --auto-truncate: what a request that does not say gets (OpenAI's requests never say).
    let cutting = Server::start(&model, &["--task", "embed", "--max-len", "8", "--auto-truncate"]);
    assert_eq!(cutting.post("/v1/embeddings", &json!({"input": long}).to_string()).0, 200);
    assert_eq!(cutting.post("/embed", &json!({"inputs": long}).to_string()).0, 200);
    assert_eq!(cutting.post("/embed", &json!({"inputs": long, "truncate": false}).to_string()).0, 413);
    drop(cutting);

    if !common::python_available() {
        return;
    }
    // The clients themselves: InferenceClient posts to the server's URL; openai asks for base64.
    let script = r#"
import json, sys
from huggingface_hub import InferenceClient
import openai
base, texts = sys.argv[1], json.loads(sys.argv[2])
hub = InferenceClient(base).feature_extraction(texts[0], normalize=True).tolist()
oai = openai.OpenAI(base_url=base + "/v1", api_key="unused").embeddings.create(input=texts, model="m")
print(json.dumps({"hub": hub, "openai": [d.embedding for d in oai.data], "tokens": oai.usage.prompt_tokens}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &server.base, &serde_json::to_string(&texts).unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clients: Value = serde_json::from_slice(&out.stdout).unwrap();
    // InferenceClient reads the JSON into float32: /embed's values, rounded to float32.
    let f32s = |v: &Value| -> Vec<f32> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    assert_eq!(f32s(&clients["hub"][0]), f32s(&unit[0]), "InferenceClient's vector is /embed's");
    let from_openai: Vec<Vec<f32>> = serde_json::from_value(clients["openai"].clone()).unwrap();
    assert_eq!(from_openai, vectors, "the openai client decodes the same float32 values");
    assert_eq!(clients["tokens"], json!(tokens));
}

#[test]
fn a_reranker_answers_tei_rerank_with_the_scores_of_predict() {
    let dir = tempfile::tempdir().unwrap();
    let (train, model) = (dir.path().join("c.csv"), dir.path().join("reranker"));
    write_candidates(&train, 8);
    let mut args = finetune_tiny(&train, &model, &["--max-steps", "2", "--batch-size", "8"]);
    let columns = ["--task", "rerank", "--text-column", "query", "--text-pair-column", "passage"];
    args.extend(columns.iter().map(|s| s.to_string()));
    ok(&args);
    let server = Server::start(&model, &[]);
    assert!(server.get("/info").contains("\"route\":\"/rerank\""), "a reranker serves /rerank by default");
    let (query, texts) = ("question 1 about repairs", ["the clause on pets", "the clause on repairs", "keys"]);
    let request = json!({"query": query, "texts": texts, "return_text": true});
    let (status, ranked) = server.post("/rerank", &request.to_string());
    assert_eq!(status, 200, "{ranked}");
    let ranked = ranked.as_array().unwrap().clone();
    assert_eq!(ranked.len(), 3);
    let scores: Vec<f64> = ranked.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
    let input = dir.path().join("pairs.csv");
    let rows: String = texts.iter().map(|t| format!("{query},{t}\n")).collect();
    std::fs::write(&input, format!("query,passage\n{rows}")).unwrap();
    let want = rerank_scores(&model, &input);
    for r in &ranked {
        let i = r["index"].as_u64().unwrap() as usize;
        assert_eq!(r["text"], texts[i]);
        assert!((r["score"].as_f64().unwrap() - want[i]).abs() < 1e-6, "{r} vs predict {}", want[i]);
    }
    let raw = json!({"query": query, "texts": texts, "parameters": {"raw_scores": true}});
    let (_, logits) = server.post("/", &raw.to_string());
    for r in logits.as_array().unwrap() {
        let i = r["index"].as_u64().unwrap() as usize;
        let sigmoid = 1.0 / (1.0 + (-r["score"].as_f64().unwrap()).exp());
        assert!((sigmoid - want[i]).abs() < 1e-6 && r.get("text").is_none(), "raw logits at the root: {r}");
    }
    let (status, refused) = server.post("/rerank", &json!({"query": query, "texts": []}).to_string());
    assert_eq!(status, 422, "{refused}");
    let classifier = tiny_model();
    let run = bertkit(&["serve", "--model", classifier.to_str().unwrap(), "--task", "rerank", "--port", "0"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("--task rerank") && stderr.contains("3 label(s)"), "{stderr}");
}

/// A question-answering model answers `/qa` (huggingface_hub's `question_answering` request:
/// `inputs` one `{question, context}` or a list) with `predict`'s answers; a question too long
/// for the windows is refused alone, and the server stays up.
#[test]
fn a_reader_answers_questions_as_the_predict_command() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = common::repo().join("tests/fixtures/reference/qa_examples.jsonl");
    let model = tmp.path().join("qa");
    let (e, m) = (examples.to_str().unwrap(), model.to_str().unwrap());
    let window = ["--max-len", "64", "--doc-stride", "16"];
    let tiny = tiny_model();
    let mut args = vec!["finetune", "--model", tiny.to_str().unwrap(), "--train", e, "--output", m];
    args.extend(["--max-steps", "6", "--lr", "1e-3", "--batch-size", "4", "--threads", "1", "--precision", "fp32"]);
    args.extend(window);
    ok(&args);
    let mut args = vec!["predict", "--model", m, "--input", e, "--threads", "1", "--precision", "fp32"];
    args.extend(window);
    let cli: Vec<Value> = ok(&args).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rows: Vec<Value> =
        std::fs::read_to_string(&examples).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let server = Server::start(&model, &window);
    assert_eq!(serde_json::from_str::<Value>(&server.get("/info")).unwrap()["task"], "question-answering");
    let input = |r: &Value| json!({"question": r["question"], "context": r["context"]});
    let (status, one) = server.post("/qa", &json!({"inputs": input(&rows[0])}).to_string());
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["answer"], cli[0]["answer"]);
    assert_eq!(one["answers"], cli[0]["answers"]);
    let all: Vec<Value> = rows.iter().map(input).collect();
    let (status, many) = server.post("/qa", &json!({"inputs": all}).to_string());
    assert_eq!(status, 200, "{many}");
    for (got, want) in many.as_array().unwrap().iter().zip(&cli) {
        assert_eq!(got["answer"], want["answer"]);
        let p = want["answers"].get(0).map_or(want["null_probability"].clone(), |a| a["probability"].clone());
        assert_eq!(got["score"], p, "the score is the answer's probability (no answer's where none)");
    }
    let long = json!({"question": "who ".repeat(60), "context": "The tenant pays."});
    let (status, refused) = server.post("/qa", &json!({"inputs": long}).to_string());
    assert_eq!(status, 422, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("no room for the context"), "{refused}");
    assert_eq!(server.post("/qa", &json!({"inputs": input(&rows[1])}).to_string()).0, 200, "still up");
}
