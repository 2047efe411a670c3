//! A server from code: the model behind HTTP on a thread of this program, asked once, then the
//! program ends (and the server with it).
//!
//! `cargo run --release --example serve -- [MODEL]`: MODEL defaults to what the `finetune`
//! example writes (`target/examples/sentiment`); the request is text-embeddings-inference's
//! `/predict`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bertkit::serve::Serve;

fn main() -> anyhow::Result<()> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "target/examples/sentiment".into());
    let mut server = Serve::new(&model)?;
    // A port nobody holds: the system's choice for a listener opened and closed here.
    server.port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address = format!("{}:{}", server.host, server.port);
    let serving = std::thread::spawn(move || server.run());

    let started = Instant::now();
    while http(&address, "GET", "/health", "").is_err() {
        if serving.is_finished() {
            return serving.join().expect("the server thread panicked");
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the server did not start within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = http(&address, "POST", "/predict", r#"{"inputs": "A wonderful film, I loved every minute."}"#)?;
    println!("{answer}");
    Ok(())
}

/// One HTTP/1.1 request; the response body, or an error for a refused connection or a status
/// other than 200.
fn http(address: &str, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{method} {path}: {}", head.lines().next().unwrap_or(""));
    Ok(body.to_string())
}
