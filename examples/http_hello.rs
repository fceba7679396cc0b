//! A minimal HTTP/1.1 "hello world" server: one green thread per connection, keep-alive and
//! pipelined requests, plain blocking reads and writes on `gort::net`.
//!
//! ```sh
//! cargo run --release --example http_hello                       # self-test: serve, fetch, exit
//! cargo run --release --example http_hello -- serve 127.0.0.1:8080
//! curl -v http://127.0.0.1:8080/                                 # from another terminal
//! ```
//!
//! Not a web framework: it parses the request line and headers only as far as it needs to
//! (the method, `Content-Length` to skip a body, `Connection: close`), and answers every
//! request with the same page.

use std::io::{self, Read, Write};
use std::time::Duration;

use gort::net::{TcpListener, TcpStream};

const BODY: &str = "Hello, world!\n";
/// Largest request head accepted; beyond it the connection gets a 431 and is closed.
const MAX_HEAD: usize = 16 * 1024;

/// One parsed request head: how many bytes it took, the body length, keep-alive or not.
struct Head {
    len: usize,
    body: usize,
    close: bool,
}

/// Parses the head at the start of `buf`, if it is complete.
fn parse_head(buf: &[u8]) -> Option<Result<Head, &'static str>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = match std::str::from_utf8(&buf[..end]) {
        Ok(t) => t,
        Err(_) => return Some(Err("400 Bad Request")),
    };
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (method, version) = (parts.next(), parts.nth(1));
    if !method.is_some_and(|m| !m.is_empty()) || !version.is_some_and(|v| v.starts_with("HTTP/1."))
    {
        return Some(Err("400 Bad Request"));
    }
    let mut close = version == Some("HTTP/1.0");
    let mut body = 0;
    for l in lines.filter(|l| !l.is_empty()) {
        let Some((k, v)) = l.split_once(':') else {
            return Some(Err("400 Bad Request"));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            match v.parse() {
                Ok(n) => body = n,
                Err(_) => return Some(Err("400 Bad Request")),
            }
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    Some(Ok(Head {
        len: end,
        body,
        close,
    }))
}

/// Serves one connection until the client closes it (or asks to).
fn serve(mut c: TcpStream) -> io::Result<()> {
    let _ = c.set_nodelay(true);
    // An idle keep-alive connection is closed after a while, as real servers do.
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    loop {
        // Answer every complete request in the buffer (pipelining), in one write.
        let mut out = Vec::new();
        let mut close = false;
        loop {
            match parse_head(&buf) {
                None => break,
                Some(Err(status)) => {
                    out.extend_from_slice(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    close = true;
                    break;
                }
                Some(Ok(h)) => {
                    if buf.len() < h.len + h.body {
                        break; // the body is still coming
                    }
                    buf.drain(..h.len + h.body);
                    out.extend_from_slice(response.as_bytes());
                    if h.close {
                        close = true;
                        break;
                    }
                }
            }
        }
        if !out.is_empty() {
            c.write_all(&out)?;
        }
        if close {
            return Ok(());
        }
        if buf.len() > MAX_HEAD {
            c.write_all(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
        let n = c.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Accepts forever, a green thread per connection.
fn run(l: TcpListener) {
    loop {
        match l.accept() {
            Ok((c, _)) => drop(gort::go!(move || serve(c))),
            Err(e) => {
                eprintln!("accept: {e}; retrying in 5 ms");
                gort::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Fetches `/` `n` times over one keep-alive connection, the last request pipelined with
/// `Connection: close`; returns the responses' bodies.
fn fetch(addr: std::net::SocketAddr, n: usize) -> io::Result<Vec<String>> {
    let mut c = TcpStream::connect(addr)?;
    let mut req = String::new();
    for i in 0..n {
        let conn = if i + 1 == n { "close" } else { "keep-alive" };
        req += &format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: {conn}\r\n\r\n");
    }
    c.write_all(req.as_bytes())?;
    let mut all = String::new();
    c.read_to_string(&mut all)?;
    Ok(all
        .split("HTTP/1.1 ")
        .filter(|r| !r.is_empty())
        .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
        .collect())
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let l = TcpListener::bind(args.get(1).map_or("127.0.0.1:8080", String::as_str))?;
        println!("serving on http://{}/", l.local_addr()?);
        run(l);
        return Ok(());
    }
    // Self-test: serve on a free port, fetch from 100 green threads at once, check, exit.
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    drop(gort::go!(move || run(l)));
    let clients: Vec<_> = (0..100)
        .map(|_| gort::go!(move || fetch(addr, 10)))
        .collect();
    let mut pages = 0;
    for h in clients {
        let bodies = h.join().expect("client panicked")?;
        assert_eq!(bodies.len(), 10);
        assert!(bodies.iter().all(|b| b == BODY), "{bodies:?}");
        pages += bodies.len();
    }
    println!("served {pages} pages to 100 keep-alive clients at http://{addr}/: {BODY:?}");
    Ok(())
}
