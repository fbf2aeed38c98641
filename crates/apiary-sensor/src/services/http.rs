//! HTTP, and the HTTP-based services (Elasticsearch, CouchDB, ClickHouse,
//! Kubernetes API) as flavours with their own JSON answers.
//!
//! Every request is captured whole in RX events (head up to 16 KiB, body up
//! to 64 KiB) and summarised in an INFO `http` fact; Basic credentials and
//! login forms (phpMyAdmin, WordPress, WebLogic, Tomcat, JBoss) become INFO
//! `login`. Keep-alive is honoured so scanners reuse the connection.
//! Options: `banner` (the `Server:` header), `version` (the version flavours
//! report).

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
const MAX_REQUESTS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Web,
    Elasticsearch,
    CouchDb,
    ClickHouse,
    Kubernetes,
}

#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response { status, content_type, headers: Vec::new(), body: body.into() }
    }
    fn html(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/html; charset=UTF-8", body)
    }
    fn json(status: u16, body: serde_json::Value) -> Self {
        Self::new(status, "application/json; charset=UTF-8", body.to_string())
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "OK",
    }
}

/// Reads one request; `None` when the client closed between requests.
async fn read_request(conn: &mut Conn) -> io::Result<Option<Request>> {
    let mut line = loop {
        let Some(l) = conn.read_line(MAX_HEAD).await? else { return Ok(None) };
        // Tolerate stray CRLFs between pipelined requests.
        if !l.is_empty() {
            break l;
        }
    };
    let mut req = Request::default();
    {
        let text = String::from_utf8_lossy(&line);
        let mut parts = text.split_whitespace();
        req.method = parts.next().unwrap_or("").chars().take(32).collect();
        req.target = parts.next().unwrap_or("/").chars().take(MAX_HEAD).collect();
        req.version = parts.next().unwrap_or("HTTP/0.9").chars().take(16).collect();
    }
    let mut head = line.len();
    loop {
        line = match conn.read_line(MAX_HEAD).await? {
            Some(l) => l,
            None => break,
        };
        if line.is_empty() {
            break;
        }
        head += line.len();
        if head > MAX_HEAD || req.headers.len() >= 100 {
            return Err(io::Error::other("request head too large"));
        }
        let text = String::from_utf8_lossy(&line);
        if let Some((k, v)) = text.split_once(':') {
            req.headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len = req.header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    if len > 0 {
        let take = len.min(MAX_BODY);
        if let Some(b) = conn.read_exact(take).await? {
            req.body = b;
        }
        if len > take {
            return Err(io::Error::other("request body too large"));
        }
    } else if req.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        // Not worth decoding: take what came, answer, and close.
        if let Some(b) = conn.read_some().await? {
            req.body = b.into_iter().take(MAX_BODY).collect();
        }
        req.headers.push(("Connection".into(), "close".into()));
    }
    Ok(Some(req))
}

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig, flavor: Flavor) -> io::Result<()> {
    for _ in 0..MAX_REQUESTS {
        let req = match read_request(conn).await? {
            Some(r) => r,
            None => return Ok(()),
        };
        let mut fact =
            Fact::new("http").with("method", &req.method).with("path", &req.target).with("version", &req.version);
        for (k, name) in [("host", "host"), ("user-agent", "user_agent")] {
            if let Some(v) = req.header(k) {
                fact = fact.with(name, v);
            }
        }
        conn.info(fact).await;
        for login in credentials(&req) {
            conn.info(login).await;
        }
        let resp = route(&req, cfg, flavor);
        let close = req.version == "HTTP/1.0"
            || req.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || !req.version.starts_with("HTTP/1");
        let server = cfg.banner.clone().unwrap_or_else(|| default_server(flavor).to_owned());
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: {server}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            resp.status,
            reason(resp.status),
            chrono_date(),
            resp.content_type,
            if req.method == "HEAD" { 0 } else { resp.body.len() },
        );
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(if close { "Connection: close\r\n\r\n" } else { "Connection: keep-alive\r\n\r\n" });
        let mut bytes = out.into_bytes();
        if req.method != "HEAD" {
            bytes.extend_from_slice(&resp.body);
        }
        conn.write(&bytes).await?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn default_server(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Web => "Apache/2.4.41 (Ubuntu)",
        Flavor::CouchDb => "CouchDB/3.3.2 (Erlang OTP/24)",
        _ => "",
    }
}

fn chrono_date() -> String {
    // RFC 7231 IMF-fixdate, derived from the model's UTC helpers.
    let dt = apiary_model::time::to_datetime(apiary_model::time::now_ms());
    dt.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Credentials in the request: Basic auth, or a known login form.
fn credentials(req: &Request) -> Vec<Fact> {
    let mut out = Vec::new();
    if let Some(auth) = req.header("authorization") {
        if let Some(b64) = auth.strip_prefix("Basic ").or_else(|| auth.strip_prefix("basic ")) {
            if let Some(decoded) = crate::services::smtp::base64_decode(b64.trim()) {
                let (u, p) = match decoded.iter().position(|&b| b == b':') {
                    Some(i) => (&decoded[..i], &decoded[i + 1..]),
                    None => (&decoded[..], &[][..]),
                };
                out.push(Fact::login(u, p).with("method", "basic"));
            }
        }
    }
    let form = if req.method == "POST" { String::from_utf8_lossy(&req.body).into_owned() } else { String::new() };
    let fields = parse_form(&form).into_iter().chain(parse_form(req.query())).collect::<Vec<_>>();
    let get = |names: &[&str]| fields.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone());
    if let (Some(u), Some(p)) = (
        get(&["pma_username", "log", "j_username", "username", "user", "login"]),
        get(&["pma_password", "pwd", "j_password", "password", "pass"]),
    ) {
        out.push(Fact::login(u, p).with("method", "form").with("path", req.path()));
    }
    out
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .take(64)
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn route(req: &Request, cfg: &ServiceConfig, flavor: Flavor) -> Response {
    match flavor {
        Flavor::Web => web(req),
        Flavor::Elasticsearch => elasticsearch(req, cfg),
        Flavor::CouchDb => couchdb(req, cfg),
        Flavor::ClickHouse => clickhouse(req, cfg),
        Flavor::Kubernetes => kubernetes(req, cfg),
    }
}

const APACHE_INDEX: &str = "<!DOCTYPE html>\n<html><head><title>Apache2 Ubuntu Default Page: It works</title></head>\n<body><h1>It works!</h1><p>This is the default welcome page used to test the correct operation of the Apache2 server after installation on Ubuntu systems.</p></body></html>\n";

fn not_found(path: &str) -> Response {
    Response::html(
        404,
        format!("<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n<p>The requested URL {} was not found on this server.</p>\n</body></html>\n", html_escape(path)),
    )
}

fn html_escape(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            c => c.to_string(),
        })
        .collect()
}

fn web(req: &Request) -> Response {
    let path = req.path();
    let lower = path.to_ascii_lowercase();
    if lower == "/" || lower == "/index.html" {
        return Response::html(200, APACHE_INDEX);
    }
    if lower.starts_with("/phpmyadmin") || lower.starts_with("/pma") || lower.starts_with("/myadmin") {
        if req.method == "POST" {
            return Response::html(
                200,
                PMA_LOGIN.replace("<!--ERR-->", "<div class=\"error\">#1045 - Access denied for user</div>"),
            );
        }
        return Response::html(200, PMA_LOGIN)
            .header("Set-Cookie", "phpMyAdmin=5e0b7a1c2d; path=/phpmyadmin/; HttpOnly");
    }
    if lower.starts_with("/wp-login.php") || lower.starts_with("/wp-admin") {
        if req.method == "POST" {
            return Response::html(
                200,
                WP_LOGIN.replace(
                    "<!--ERR-->",
                    "<div id=\"login_error\"><strong>Error:</strong> The password you entered is incorrect.</div>",
                ),
            );
        }
        return Response::html(200, WP_LOGIN);
    }
    if lower.starts_with("/console") {
        if lower == "/console" || lower == "/console/" {
            return Response::html(302, "").header("Location", "/console/login/LoginForm.jsp");
        }
        return Response::html(200, WEBLOGIC_LOGIN);
    }
    if lower.starts_with("/manager/html") || lower.starts_with("/manager/text") || lower.starts_with("/host-manager") {
        return Response::html(401, TOMCAT_401)
            .header("WWW-Authenticate", "Basic realm=\"Tomcat Manager Application\"");
    }
    if lower.starts_with("/jmx-console") || lower.starts_with("/web-console") || lower.starts_with("/invoker") {
        return Response::html(401, "<html><head><title>JBoss Web/7.0.13.Final - Error report</title></head><body><h1>HTTP Status 401 - </h1></body></html>")
            .header("WWW-Authenticate", "Basic realm=\"JBoss JMX Console\"");
    }
    if lower == "/robots.txt" {
        return Response::new(200, "text/plain", "User-agent: *\nDisallow: /wp-admin/\nDisallow: /phpmyadmin/\n");
    }
    not_found(path)
}

const PMA_LOGIN: &str = "<!DOCTYPE HTML><html lang=\"en\" dir=\"ltr\"><head><meta charset=\"utf-8\"><title>phpMyAdmin</title></head><body class=\"loginform\"><div class=\"container\"><h1>Welcome to <bdo dir=\"ltr\" lang=\"en\">phpMyAdmin</bdo></h1><!--ERR--><form method=\"post\" action=\"index.php\" name=\"login_form\" class=\"disableAjax login hide js-show\"><fieldset><legend>Log in</legend><div class=\"item\"><label for=\"input_username\">Username:</label><input type=\"text\" name=\"pma_username\" id=\"input_username\" value=\"\" size=\"24\" class=\"textfield\"></div><div class=\"item\"><label for=\"input_password\">Password:</label><input type=\"password\" name=\"pma_password\" id=\"input_password\" value=\"\" size=\"24\" class=\"textfield\"></div><input type=\"hidden\" name=\"server\" value=\"1\"></fieldset><fieldset class=\"tblFooters\"><input value=\"Go\" type=\"submit\" id=\"input_go\"></fieldset></form></div></body></html>\n";

const WP_LOGIN: &str = "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"UTF-8\"><title>Log In &lsaquo; My Blog &#8212; WordPress</title></head><body class=\"login no-js login-action-login wp-core-ui\"><div id=\"login\"><h1><a href=\"https://wordpress.org/\">Powered by WordPress</a></h1><!--ERR--><form name=\"loginform\" id=\"loginform\" action=\"/wp-login.php\" method=\"post\"><p><label for=\"user_login\">Username or Email Address</label><input type=\"text\" name=\"log\" id=\"user_login\" class=\"input\" value=\"\" size=\"20\"></p><div class=\"user-pass-wrap\"><label for=\"user_pass\">Password</label><input type=\"password\" name=\"pwd\" id=\"user_pass\" class=\"input password-input\" value=\"\" size=\"20\"></div><p class=\"submit\"><input type=\"submit\" name=\"wp-submit\" id=\"wp-submit\" class=\"button button-primary button-large\" value=\"Log In\"></p></form></div></body></html>\n";

const WEBLOGIC_LOGIN: &str = "<!DOCTYPE html><html><head><title>Oracle WebLogic Server Administration Console 12c</title></head><body><div id=\"login-container\"><form id=\"loginData\" method=\"post\" action=\"/console/j_security_check\"><label for=\"j_username\">Username:</label><input type=\"text\" id=\"j_username\" name=\"j_username\"><label for=\"j_password\">Password:</label><input type=\"password\" id=\"j_password\" name=\"j_password\"><input type=\"submit\" value=\"Login\"></form><p>WebLogic Server Version: 12.2.1.3.0</p></div></body></html>\n";

const TOMCAT_401: &str = "<!doctype html><html lang=\"en\"><head><title>401 Unauthorized</title></head><body><h1>401 Unauthorized</h1><p>You are not authorized to view this page. If you have not changed any configuration files, please examine the file <tt>conf/tomcat-users.xml</tt> in your installation.</p><p>For example, to add the <tt>manager-gui</tt> role to a user named <tt>tomcat</tt> with a password of <tt>s3cret</tt>, add the following to the config file listed above.</p></body></html>\n";

fn elasticsearch(req: &Request, cfg: &ServiceConfig) -> Response {
    let version = cfg.version.as_deref().unwrap_or("7.17.9");
    let host = cfg.hostname();
    let path = req.path().trim_end_matches('/');
    match path {
        "" => Response::json(
            200,
            serde_json::json!({
                "name": host, "cluster_name": "elasticsearch", "cluster_uuid": "x1GqBh7qRGiPPW3jk3pCcA",
                "version": {"number": version, "build_flavor": "default", "build_type": "deb",
                    "build_hash": "ef48222227ee6b9e70e502f0f0daa52435ee634d", "build_date": "2023-01-31T05:34:43.305517834Z",
                    "build_snapshot": false, "lucene_version": "8.11.1", "minimum_wire_compatibility_version": "6.8.0",
                    "minimum_index_compatibility_version": "6.0.0-beta1"},
                "tagline": "You Know, for Search"
            }),
        ),
        "/_cat/indices" => Response::new(
            200,
            "text/plain; charset=UTF-8",
            "green open customers 2Hk2RJ3bQjKp3g3ZqK1BzA 1 0 1523 0 1.2mb 1.2mb\n",
        ),
        "/_cluster/health" => Response::json(
            200,
            serde_json::json!({"cluster_name":"elasticsearch","status":"green","number_of_nodes":1,"number_of_data_nodes":1,"active_shards":1}),
        ),
        "/_nodes" => Response::json(
            200,
            serde_json::json!({"_nodes":{"total":1,"successful":1,"failed":0},"cluster_name":"elasticsearch","nodes":{"n1":{"name":host,"version":version,"ip":"127.0.0.1"}}}),
        ),
        p if p.ends_with("/_search") || p == "/_search" => Response::json(
            200,
            serde_json::json!({"took":1,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"total":{"value":0,"relation":"eq"},"max_score":null,"hits":[]}}),
        ),
        _ => Response::json(
            404,
            serde_json::json!({"error":{"root_cause":[{"type":"index_not_found_exception","reason":"no such index"}],"type":"index_not_found_exception","reason":"no such index"},"status":404}),
        ),
    }
}

fn couchdb(req: &Request, cfg: &ServiceConfig) -> Response {
    let version = cfg.version.as_deref().unwrap_or("3.3.2");
    match req.path().trim_end_matches('/') {
        "" => Response::json(
            200,
            serde_json::json!({"couchdb":"Welcome","version":version,"git_sha":"11a234070","uuid":"0e6f4b3a8c2b4e5f9d1a7c3b2e1f0a9d","features":["access-ready","partitioned","pluggable-storage-engines","reshard","scheduler"],"vendor":{"name":"The Apache Software Foundation"}}),
        ),
        "/_all_dbs" => Response::json(200, serde_json::json!(["_replicator", "_users"])),
        "/_session" => {
            Response::json(401, serde_json::json!({"error":"unauthorized","reason":"Name or password is incorrect."}))
        }
        "/_utils" => {
            Response::html(200, "<!DOCTYPE html><html><head><title>Project Fauxton</title></head><body></body></html>")
        }
        _ => Response::json(404, serde_json::json!({"error":"not_found","reason":"Database does not exist."})),
    }
}

fn clickhouse(req: &Request, cfg: &ServiceConfig) -> Response {
    let version = cfg.version.as_deref().unwrap_or("23.8.2.7");
    let query = parse_form(req.query()).into_iter().find(|(k, _)| k == "query").map(|(_, v)| v);
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let q = query.unwrap_or(body);
    let r = match req.path() {
        "/ping" => Response::new(200, "text/plain; charset=UTF-8", "Ok.\n"),
        "/" if q.trim().is_empty() => Response::new(200, "text/plain; charset=UTF-8", "Ok.\n"),
        "/" | "/query" => {
            let upper = q.trim().to_ascii_uppercase();
            if upper.starts_with("SELECT VERSION()") {
                Response::new(200, "text/tab-separated-values; charset=UTF-8", format!("{version}\n"))
            } else if upper.starts_with("SELECT 1") {
                Response::new(200, "text/tab-separated-values; charset=UTF-8", "1\n")
            } else if upper.starts_with("SHOW DATABASES") {
                Response::new(
                    200,
                    "text/tab-separated-values; charset=UTF-8",
                    "INFORMATION_SCHEMA\ndefault\ninformation_schema\nsystem\n",
                )
            } else {
                Response::new(500, "text/plain; charset=UTF-8", format!("Code: 62. DB::Exception: Syntax error: failed at position 1. (SYNTAX_ERROR) (version {version} (official build))\n"))
            }
        }
        _ => Response::new(404, "text/plain; charset=UTF-8", format!("There is no handle {}\n", req.path())),
    };
    r.header("X-ClickHouse-Server-Display-Name", cfg.hostname()).header("X-ClickHouse-Format", "TabSeparated")
}

fn kubernetes(req: &Request, cfg: &ServiceConfig) -> Response {
    let version = cfg.version.as_deref().unwrap_or("v1.27.4");
    let minor = version.split('.').nth(1).unwrap_or("27");
    match req.path().trim_end_matches('/') {
        "/version" => Response::json(
            200,
            serde_json::json!({"major":"1","minor":minor,"gitVersion":version,"gitCommit":"fa3d7990104d7c1f16943a67f11b154b71f6a132","gitTreeState":"clean","buildDate":"2023-07-19T12:14:49Z","goVersion":"go1.20.6","compiler":"gc","platform":"linux/amd64"}),
        ),
        "/healthz" | "/livez" | "/readyz" => Response::new(200, "text/plain; charset=utf-8", "ok"),
        "/api" => Response::json(
            200,
            serde_json::json!({"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"10.0.0.1:6443"}]}),
        ),
        p => {
            let msg = format!(
                "forbidden: User \"system:anonymous\" cannot get path \"{}\"",
                p.chars().take(200).collect::<String>()
            );
            Response::json(
                403,
                serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":msg,"reason":"Forbidden","details":{},"code":403}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        assert_eq!(percent_decode("a%20b+c%zz%4"), "a b c%zz%4");
        let req = Request {
            method: "POST".into(),
            target: "/wp-login.php".into(),
            body: b"log=admin&pwd=pa%26ss&wp-submit=Log+In".to_vec(),
            ..Default::default()
        };
        let facts = credentials(&req);
        assert_eq!(facts.len(), 1);
        let json = String::from_utf8(facts[0].to_bytes()).unwrap();
        assert!(json.contains("\"password\":\"pa&ss\""), "{json}");
    }
}
