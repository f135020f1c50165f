//! The HTTP/JSON API (`http_api.port`) against a real coordinator and three storage nodes, with
//! raw HTTP/1.1 over a `TcpStream`, as curl would send it: every route, idempotency through the
//! `Idempotency-Key` header, errors (HTTP status and `error_code`), keep-alive and pipelining,
//! the bounds (body, head), and that without `http_api.port` nothing more listens.

mod common;

use std::{
    collections::HashSet,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use common::{CoordinatorProcess, StorageProcess};
use serde_json::{json, Value};
use tempfile::TempDir;

struct Cluster {
    _tmp: TempDir,
    _storage: Vec<StorageProcess>,
    coordinator: CoordinatorProcess,
}

fn start(name: &str, config_yaml: &str, storage_nodes: usize) -> Cluster {
    let tmp = tempfile::Builder::new().prefix(&format!("pairdb-http-{name}-")).tempdir().unwrap();
    let common::TestCluster { storage, coordinator } =
        common::start_cluster(tmp.path(), name, storage_nodes, 1, config_yaml);
    Cluster { _tmp: tmp, _storage: storage, coordinator }
}

/// One reply: status, headers (names lower-cased) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("reply body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body))
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Asserts an error reply: the status and `error_code`.
    #[track_caller]
    fn assert_error(&self, status: u16, error_code: &str) -> Value {
        let body = self.json();
        assert_eq!(
            (self.status, body["error_code"].as_str()),
            (status, Some(error_code)),
            "{body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        body
    }

    #[track_caller]
    fn assert_ok(&self) -> Value {
        let body = self.json();
        assert_eq!(self.status, 200, "{body}");
        body
    }
}

/// A client connection that speaks raw HTTP/1.1.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connecting to the HTTP API");
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Conn { stream, buf: Vec::new() }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("sending");
    }

    /// Sends one request (JSON body when given) and reads its reply.
    fn call(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.send_raw(&request(method, target, headers, &body));
        self.read_reply()
    }

    /// Reads one reply; panics on EOF before a complete one.
    fn read_reply(&mut self) -> Reply {
        self.try_read_reply().expect("connection closed before a complete reply")
    }

    fn try_read_reply(&mut self) -> Option<Reply> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) =
                resp.parse(&self.buf).expect("valid HTTP reply")
            {
                let status = resp.code.unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned())
                    })
                    .collect();
                let content_length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                while self.buf.len() < len + content_length {
                    if !self.fill() {
                        return None;
                    }
                }
                let body = self.buf[len..len + content_length].to_vec();
                self.buf.drain(..len + content_length);
                return Some(Reply { status, headers, body });
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// True when the server closed the connection (EOF with nothing more sent).
    fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: pairdb\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// The TCP ports process `pid` listens on (its sockets in LISTEN state).
fn listening_ports(pid: libc::pid_t) -> HashSet<u16> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        if let Ok(link) = std::fs::read_link(fd.unwrap().path()) {
            let link = link.to_string_lossy().into_owned();
            if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// Sums the samples of `name` whose labels contain `labels` in the coordinator's `/metrics`.
fn metric(admin: SocketAddr, name: &str, labels: &str) -> f64 {
    let (status, text) = pairdb::admin::get(admin, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn every_route_with_grpc_semantics() {
    let cluster = start("api", "http_api: { port: 0 }\n", 3);
    let http = cluster.coordinator.http.expect("the ready line names the HTTP API");
    let ports = listening_ports(cluster.coordinator.pid());
    assert!(ports.contains(&http.port()), "{ports:?}");
    // Every request below on this one connection: keep-alive throughout.
    let mut c = Conn::open(http);

    // Tenants.
    let created = c.call(
        "POST",
        "/v1/tenants",
        &[],
        Some(&json!({"tenant_id": "t", "replication_factor": 3})),
    );
    assert_eq!(created.header("connection"), Some("keep-alive"));
    let body = created.assert_ok();
    assert_eq!(
        (body["tenant_id"].as_str(), body["replication_factor"].as_i64()),
        (Some("t"), Some(3))
    );
    assert!(body["created_at"].as_str().is_some_and(|s| s.parse::<i64>().is_ok()), "{body}");
    c.call("POST", "/v1/tenants", &[], Some(&json!({"tenant_id": "t"})))
        .assert_error(409, "TENANT_EXISTS");
    let body = c.call("GET", "/v1/tenants/t", &[], None).assert_ok();
    assert_eq!(body["replication_factor"], 3);
    c.call("GET", "/v1/tenants/nope", &[], None).assert_error(404, "TENANT_NOT_FOUND");
    c.call("POST", "/v1/tenants", &[], Some(&json!({"tenant_id": "u", "replication_factor": 5})))
        .assert_error(400, "INVALID_REPLICATION_FACTOR");

    // Writes: idempotency through the header.
    let put =
        json!({"tenant_id": "t", "key": "greeting", "value": "aGVsbG8=", "consistency": "ALL"});
    let first =
        c.call("POST", "/v1/key-value", &[("Idempotency-Key", "w-1")], Some(&put)).assert_ok();
    assert_eq!(first["is_duplicate"], false, "{first}");
    assert_eq!(first["replica_count"], 3, "{first}");
    assert_eq!(first["consistency"], "ALL", "{first}");
    assert_eq!(first["idempotency_key"], "w-1", "{first}");
    let entries = first["vector_clock"]["entries"].as_array().expect("a vector clock");
    assert_eq!(entries.len(), 1, "{first}");
    assert!(entries[0]["logical_timestamp"].as_str().is_some_and(|s| s.parse::<i64>().is_ok()));
    let retry =
        c.call("POST", "/v1/key-value", &[("idempotency-key", "w-1")], Some(&put)).assert_ok();
    assert_eq!(retry["is_duplicate"], true, "a retry is a duplicate: {retry}");
    assert_eq!(retry["vector_clock"], first["vector_clock"]);
    let other = json!({"tenant_id": "t", "key": "greeting", "value": "b3RoZXI="});
    c.call("POST", "/v1/key-value", &[("Idempotency-Key", "w-1")], Some(&other))
        .assert_error(400, "IDEMPOTENCY_KEY_CONFLICT");
    // Without a key, one is generated and returned.
    let unkeyed = json!({"tenant_id": "t", "key": "k2", "value": "djI"});
    let body = c.call("POST", "/v1/key-value", &[], Some(&unkeyed)).assert_ok();
    assert_eq!(body["idempotency_key"].as_str().map(str::len), Some(32), "{body}");
    assert_eq!(body["consistency"], "CONSISTENCY_UNSPECIFIED", "{body}");

    // Reads.
    let read = c
        .call("GET", "/v1/key-value?tenant_id=t&key=greeting&consistency=QUORUM", &[], None)
        .assert_ok();
    assert_eq!(read["value"], "aGVsbG8=", "{read}");
    assert_eq!(read["key"], "greeting");
    assert_eq!(read["vector_clock"], first["vector_clock"]);
    assert!(read["replica_count"].as_i64().is_some_and(|n| n >= 2), "{read}");
    let body = c.call("GET", "/v1/key-value?tenant_id=t&key=k2", &[], None).assert_ok();
    assert_eq!(body["value"], "djI=", "unpadded base64 was accepted: {body}");
    // A causal write: the clock read comes back in the proto's JSON shape.
    let causal = json!({"tenant_id": "t", "key": "greeting", "value": "aGk=", "vector_clock": read["vector_clock"]});
    let body = c.call("POST", "/v1/key-value", &[], Some(&causal)).assert_ok();
    assert!(
        body["vector_clock"]["entries"][0]["logical_timestamp"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > entries[0]["logical_timestamp"].as_str().unwrap().parse::<i64>().unwrap()
    );
    let read = c.call("GET", "/v1/key-value?tenant_id=t&key=greeting", &[], None).assert_ok();
    assert_eq!(read["value"], "aGk=");

    // Deletes: the query string or a JSON body, idempotent through the header.
    let del = c
        .call(
            "DELETE",
            "/v1/key-value?tenant_id=t&key=greeting",
            &[("Idempotency-Key", "d-1")],
            None,
        )
        .assert_ok();
    assert_eq!(del["is_duplicate"], false, "{del}");
    let del = c
        .call(
            "DELETE",
            "/v1/key-value?tenant_id=t&key=greeting",
            &[("Idempotency-Key", "d-1")],
            None,
        )
        .assert_ok();
    assert_eq!(del["is_duplicate"], true, "{del}");
    c.call("GET", "/v1/key-value?tenant_id=t&key=greeting", &[], None)
        .assert_error(404, "KEY_NOT_FOUND");
    let body = c
        .call(
            "DELETE",
            "/v1/key-value",
            &[],
            Some(&json!({"tenant_id": "t", "key": "k2", "consistency": "ONE"})),
        )
        .assert_ok();
    assert_eq!(body["key"], "k2");
    c.call("GET", "/v1/key-value?tenant_id=t&key=k2", &[], None).assert_error(404, "KEY_NOT_FOUND");

    // Errors.
    c.call("GET", "/v1/key-value?tenant_id=t&key=never-written", &[], None)
        .assert_error(404, "KEY_NOT_FOUND");
    c.call(
        "POST",
        "/v1/key-value",
        &[],
        Some(&json!({"tenant_id": "nope", "key": "k", "value": ""})),
    )
    .assert_error(404, "TENANT_NOT_FOUND");
    c.call("GET", "/v1/key-value?tenant_id=nope&key=k", &[], None)
        .assert_error(404, "TENANT_NOT_FOUND");
    let bad = json!({"tenant_id": "t", "key": "k", "value": "not base64!"});
    let body =
        c.call("POST", "/v1/key-value", &[], Some(&bad)).assert_error(400, "INVALID_REQUEST");
    assert!(body["message"].as_str().unwrap().contains("base64"), "{body}");
    c.send_raw(&request("POST", "/v1/key-value", &[("content-length", "9")], "{\"tenant\""));
    let body = c.read_reply().assert_error(400, "INVALID_REQUEST");
    assert!(body["message"].as_str().unwrap().contains("JSON"), "{body}");
    c.call(
        "POST",
        "/v1/key-value",
        &[],
        Some(&json!({"tenant_id": "t", "key": "k", "value": "", "colour": 1})),
    )
    .assert_error(400, "INVALID_REQUEST");
    c.call("GET", "/v1/key-value?tenant_id=t&key=k&consistency=MOST", &[], None)
        .assert_error(400, "INVALID_REQUEST");
    c.call("GET", "/v1/key-value?tenant=t&key=k", &[], None).assert_error(400, "INVALID_REQUEST");
    c.call("GET", "/v1/key-value?tenant_id=t", &[], None).assert_error(400, "INVALID_REQUEST");
    c.call("GET", "/v1/nope", &[], None).assert_error(404, "UNKNOWN_METHOD");
    c.call("GET", "/", &[], None).assert_error(404, "UNKNOWN_METHOD");
    let wrong = c.call("PATCH", "/v1/key-value", &[], None);
    wrong.assert_error(405, "UNKNOWN_METHOD");
    assert_eq!(wrong.header("allow"), Some("GET, POST, DELETE"));

    // A client deadline in Grpc-Timeout, as over gRPC: 1 ns passes before any replica answers.
    // The fan-out's deadline is the same instant, so either the request is dropped at it (504)
    // or its read gives up first (503), as a gRPC call would.
    let late = c.call("GET", "/v1/key-value?tenant_id=t&key=k", &[("grpc-timeout", "1n")], None);
    match late.status {
        504 => late.assert_error(504, "DEADLINE_EXCEEDED"),
        _ => late.assert_error(503, "QUORUM_NOT_REACHED"),
    };
    // A malformed header is refused before the body, which closes that connection.
    Conn::open(http)
        .call("GET", "/v1/key-value?tenant_id=t&key=k", &[("grpc-timeout", "soon")], None)
        .assert_error(400, "INVALID_REQUEST");
    let body = c.call("GET", "/v1/tenants/t", &[("grpc-timeout", "5S")], None).assert_ok();
    assert_eq!(body["tenant_id"], "t");

    // Replication factor and migrations.
    let body = c
        .call(
            "PUT",
            "/v1/tenants/t/replication-factor",
            &[],
            Some(&json!({"replication_factor": 2})),
        )
        .assert_ok();
    assert_eq!(
        (body["old_replication_factor"].as_i64(), body["new_replication_factor"].as_i64()),
        (Some(3), Some(2))
    );
    let migration = body["migration_id"].as_str().expect("a migration id").to_owned();
    // The change is a migration that moves data; it completes on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let body = loop {
        let body =
            c.call("GET", &format!("/v1/admin/migrations/{migration}"), &[], None).assert_ok();
        if body["status"] == "COMPLETED" || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        (body["migration_type"].as_str(), body["status"].as_str(), body["stage"].as_str()),
        (Some("REPLICATION_CHANGE"), Some("COMPLETED"), Some("COMPLETED")),
        "{body}"
    );
    assert_eq!(body["progress"]["percentage"], 100.0, "{body}");
    let list = c.call("GET", "/v1/admin/migrations?limit=5", &[], None).assert_ok();
    assert_eq!(list["migrations"][0]["migration_id"], migration.as_str(), "{list}");
    c.call("POST", &format!("/v1/admin/migrations/{migration}/cancel"), &[], None)
        .assert_error(400, "MIGRATION_NOT_CANCELLABLE");
    c.call("GET", "/v1/admin/migrations/mig-nope", &[], None)
        .assert_error(404, "MIGRATION_NOT_FOUND");
    c.call("PUT", "/v1/tenants/t/replication-factor", &[], Some(&json!({"replication_factor": 4})))
        .assert_error(400, "INVALID_REPLICATION_FACTOR");
    c.call(
        "PUT",
        "/v1/tenants/nope/replication-factor",
        &[],
        Some(&json!({"replication_factor": 1})),
    )
    .assert_error(404, "TENANT_NOT_FOUND");

    // Storage nodes.
    let body = c.call("GET", "/v1/admin/storage-nodes", &[], None).assert_ok();
    let nodes = body["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{body}");
    assert!(nodes.iter().all(|n| n["status"] == "ACTIVE"), "{body}");
    // Port 1 on loopback: nothing listens, so the node cannot be added (data is streamed to a
    // new node at once).
    let add = json!({"node_id": "extra", "host": "127.0.0.1", "port": 1});
    c.call("POST", "/v1/admin/storage-nodes", &[], Some(&add))
        .assert_error(503, "STORAGE_UNAVAILABLE");
    c.call("DELETE", "/v1/admin/storage-nodes/extra?force=true", &[], None)
        .assert_error(404, "NODE_NOT_FOUND");
    let body = c.call("GET", "/v1/admin/storage-nodes", &[], None).assert_ok();
    assert_eq!(body["nodes"].as_array().map(Vec::len), Some(3), "{body}");

    // Pipelining: two requests in one write, two replies in order.
    let mut two = request("GET", "/v1/tenants/t", &[], "");
    two.extend(request("GET", "/v1/tenants/nope", &[], ""));
    c.send_raw(&two);
    c.read_reply().assert_ok();
    c.read_reply().assert_error(404, "TENANT_NOT_FOUND");

    // Expect: 100-continue, as curl sends it for larger bodies.
    let body = json!({"tenant_id": "t", "key": "big", "value": "QUJD"}).to_string();
    let head = format!(
        "POST /v1/key-value HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    c.send_raw(head.as_bytes());
    assert_eq!(c.read_reply().status, 100);
    c.send_raw(body.as_bytes());
    c.read_reply().assert_ok();

    // Connection: close is honoured.
    let reply = c.call("GET", "/v1/tenants/t", &[("connection", "close")], None);
    reply.assert_ok();
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(c.is_closed(), "the server closes after Connection: close");

    // Counted by route and status.
    let admin = cluster.coordinator.admin;
    let writes =
        metric(admin, "pairdb_http_requests_total", r#"route="POST /v1/key-value",status="200""#);
    assert_eq!(writes, 5.0, "five successful writes");
    let unknown = metric(admin, "pairdb_http_requests_total", r#"route="other",status="404""#);
    assert_eq!(unknown, 2.0, "two unknown routes");
}

#[test]
fn bounds_and_malformed_requests() {
    // No storage node is needed to refuse requests.
    let cluster = start(
        "bounds",
        "http_api: { port: 0 }\nmax_message_bytes: 65536\nmax_value_bytes: 16384\n",
        0,
    );
    let http = cluster.coordinator.http.expect("the ready line names the HTTP API");

    // An oversize body is refused before it is read, and the connection closes.
    let mut c = Conn::open(http);
    c.send_raw(b"POST /v1/key-value HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n");
    c.send_raw(&vec![b'{'; 200_000]);
    let reply = c.read_reply();
    let body = reply.assert_error(413, "MESSAGE_TOO_LARGE");
    assert!(body["message"].as_str().unwrap().contains("10000000"), "{body}");
    assert_eq!(reply.header("connection"), Some("close"));

    // An oversize head: 431.
    let mut c = Conn::open(http);
    let big = format!("GET /v1/tenants/t HTTP/1.1\r\nx-filler: {}\r\n\r\n", "a".repeat(20 << 10));
    c.send_raw(big.as_bytes());
    c.read_reply().assert_error(431, "INVALID_REQUEST");

    // Not HTTP at all: 400, then the connection closes.
    let mut c = Conn::open(http);
    c.send_raw(b"\x16\x03\x01 hello\r\n\r\n");
    c.read_reply().assert_error(400, "INVALID_REQUEST");
    assert!(c.is_closed());

    // Chunked bodies are refused with 411.
    let mut c = Conn::open(http);
    c.send_raw(
        b"POST /v1/tenants HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    c.read_reply().assert_error(411, "INVALID_REQUEST");

    // HTTP/1.0 closes after one reply unless asked to keep alive.
    let mut c = Conn::open(http);
    c.send_raw(b"GET /v1/nope HTTP/1.0\r\n\r\n");
    let reply = c.read_reply();
    reply.assert_error(404, "UNKNOWN_METHOD");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(c.is_closed());

    // Every byte value in a path and a header: an answer, never a crash.
    let mut c = Conn::open(http);
    c.send_raw(b"GET /v1/tenants/%ff%fe HTTP/1.1\r\nhost: x\r\n\r\n");
    c.read_reply().assert_error(400, "INVALID_REQUEST");
    c.send_raw(b"POST /v1/tenants HTTP/1.1\r\ncontent-length: 4\r\n\r\n\xff\xfe\x00{");
    c.read_reply().assert_error(400, "INVALID_REQUEST");
    c.send_raw(b"POST /v1/tenants HTTP/1.1\r\ncontent-length: x\r\n\r\n");
    c.read_reply().assert_error(400, "INVALID_REQUEST");

    // Arbitrary bytes and mangled requests (seeded, so a failure replays): every one gets an
    // answer or a close, and the coordinator goes on serving.
    let valid = request("POST", "/v1/tenants", &[("Idempotency-Key", "k")], r#"{"tenant_id":"t"}"#);
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for round in 0..200 {
        let mut bytes = valid.clone();
        match round % 3 {
            0 => bytes = (0..next() % 300).map(|_| next() as u8).collect(),
            1 => {
                for _ in 0..1 + next() % 8 {
                    let at = next() % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            _ => bytes.truncate(next() % bytes.len()),
        }
        let mut c = Conn::open(http);
        c.send_raw(&bytes);
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        while c.try_read_reply().is_some() {}
    }
    let mut c = Conn::open(http);
    c.call("GET", "/v1/nope", &[], None).assert_error(404, "UNKNOWN_METHOD");
    let mut cluster = cluster;
    cluster.coordinator.assert_running();
}

#[test]
fn without_a_port_nothing_listens() {
    let cluster = start("off", "", 0);
    let coordinator = &cluster.coordinator;
    assert_eq!(coordinator.http, None, "no HTTP API in the ready line");
    let ports = listening_ports(coordinator.pid());
    let expected: HashSet<u16> = [coordinator.addr.port(), coordinator.admin.port()].into();
    assert_eq!(ports, expected, "only gRPC and the admin port listen");
}
