//! TDX collateral from a PCCS (Intel's Provisioning Certificate Caching
//! Service API, v4), cached per FMSPC until the earliest `nextUpdate` of
//! its parts.
//!
//! Collateral is signed by Intel and checked against Intel's root during
//! verification, so the transport needs no authentication of its own: plain
//! HTTP to a PCCS on the local network or loopback is what is supported.
//! Fetches block (this runs inside TLS handshakes), with short timeouts, and
//! happen once per FMSPC per collateral period.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use dcap_qvl::quote::Quote;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::evidence::{CollateralError, CollateralSource};

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 4 << 20;

/// A PCCS client with a collateral cache.
#[derive(Debug)]
pub struct Pccs {
    host: String,
    port: u16,
    prefix: String,
    cache: Mutex<HashMap<(String, String), Cached>>,
    fetches: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone)]
struct Cached {
    json: Vec<u8>,
    next_update: u64,
}

/// Why a PCCS did not provide collateral.
#[derive(Debug, thiserror::Error)]
pub enum PccsError {
    /// Its host does not resolve.
    #[error("cannot resolve {host}: {error}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        error: std::io::Error,
    },
    /// Its host resolves to nothing.
    #[error("{0} has no address")]
    NoAddress(String),
    /// It could not be reached.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The address tried.
        addr: std::net::SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// The exchange failed.
    #[error("GET {path}: {error}")]
    Io {
        /// The path asked for.
        path: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The answer is not HTTP this client reads.
    #[error("GET {path}: {error}")]
    Http {
        /// The path asked for.
        path: String,
        /// What was wrong.
        error: &'static str,
    },
    /// The answer is not a success.
    #[error("GET {path}: HTTP {status}")]
    Status {
        /// The path asked for.
        path: String,
        /// The HTTP status.
        status: u16,
    },
    /// A header it must send is missing or unreadable.
    #[error("header {name}: {error}")]
    Header {
        /// The header.
        name: String,
        /// What was wrong.
        error: &'static str,
    },
    /// A part of the collateral does not read.
    #[error("{what}: {reason}")]
    Part {
        /// Which part.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// A quote parser's error, with what was being read of the quote.
fn quote_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> CollateralError {
    move |e| CollateralError::Quote {
        what,
        reason: format!("{e:#}"),
    }
}

fn part(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> PccsError {
    move |e| PccsError::Part {
        what,
        reason: e.to_string(),
    }
}

/// A PCCS URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("PCCS URL {url:?}: {reason}")]
pub struct PccsUrlError {
    url: String,
    reason: &'static str,
}

impl Pccs {
    /// A client for `url`, e.g. `http://127.0.0.1:8081` (a path prefix is kept).
    pub fn new(url: &str) -> Result<Self, PccsUrlError> {
        let err = |reason| PccsUrlError {
            url: url.to_owned(),
            reason,
        };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            err("only http:// is supported (collateral is signed by Intel; run a PCCS nearby)")
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| err("the port is not a number"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        Ok(Pccs {
            host: host.to_owned(),
            port,
            prefix: prefix.to_owned(),
            cache: Mutex::new(HashMap::new()),
            fetches: Default::default(),
        })
    }

    /// How many times collateral was fetched (not served from the cache).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn get(&self, path_and_query: &str) -> Result<Response, PccsError> {
        let path = format!("{}{path_and_query}", self.prefix);
        let host = &self.host;
        let addr = (host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|error| PccsError::Resolve {
                host: host.clone(),
                error,
            })?
            .next()
            .ok_or_else(|| PccsError::NoAddress(host.clone()))?;
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
            .map_err(|error| PccsError::Connect { addr, error })?;
        s.set_read_timeout(Some(TIMEOUT)).ok();
        s.set_write_timeout(Some(TIMEOUT)).ok();
        let io = |error| PccsError::Io {
            path: path.clone(),
            error,
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        .map_err(io)?;
        let mut raw = Vec::new();
        s.take(MAX_BODY as u64 + 65536)
            .read_to_end(&mut raw)
            .map_err(io)?;
        let resp = Response::parse(&raw).map_err(|error| PccsError::Http {
            path: path.clone(),
            error,
        })?;
        if resp.status != 200 {
            let status = resp.status;
            return Err(PccsError::Status { path, status });
        }
        Ok(resp)
    }

    fn fetch(&self, fmspc: &str, ca: &str) -> Result<Cached, PccsError> {
        #[derive(Deserialize)]
        struct Tcb<'a> {
            #[serde(rename = "tcbInfo", borrow)]
            tcb_info: &'a RawValue,
            signature: String,
        }
        #[derive(Deserialize)]
        struct Qe<'a> {
            #[serde(rename = "enclaveIdentity", borrow)]
            identity: &'a RawValue,
            signature: String,
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let crl = self.get(&format!(
            "/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"
        ))?;
        let crl_chain = crl.issuer_chain("sgx-pck-crl-issuer-chain")?;
        let tcb = self.get(&format!("/tdx/certification/v4/tcb?fmspc={fmspc}"))?;
        let tcb_chain = tcb
            .issuer_chain("tcb-info-issuer-chain")
            .or_else(|_| tcb.issuer_chain("sgx-tcb-info-issuer-chain"))?;
        let tcb_body: Tcb<'_> =
            serde_json::from_slice(&tcb.body).map_err(|e| part("TCB info response")(&e))?;
        let qe = self.get("/tdx/certification/v4/qe/identity")?;
        let qe_chain = qe.issuer_chain("sgx-enclave-identity-issuer-chain")?;
        let qe_body: Qe<'_> =
            serde_json::from_slice(&qe.body).map_err(|e| part("QE identity response")(&e))?;
        let root_crl = self.get("/sgx/certification/v4/rootcacrl")?.body;
        // PCCS serves the root CA CRL hex-encoded; Intel's PCS serves DER.
        let root_crl = match std::str::from_utf8(&root_crl) {
            Ok(t) if t.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
                hex::decode(t.trim()).map_err(|e| part("root CA CRL")(&e))?
            }
            _ => root_crl,
        };
        let next_update = [
            next_update_json(tcb_body.tcb_info.get())?,
            next_update_json(qe_body.identity.get())?,
            next_update_crl(&crl.body)?,
            next_update_crl(&root_crl)?,
        ]
        .into_iter()
        .min()
        .unwrap_or(0);
        let json = serde_json::json!({
            "pck_crl_issuer_chain": crl_chain,
            "root_ca_crl": hex::encode(&root_crl),
            "pck_crl": hex::encode(&crl.body),
            "tcb_info_issuer_chain": tcb_chain,
            "tcb_info": tcb_body.tcb_info.get(),
            "tcb_info_signature": tcb_body.signature,
            "qe_identity_issuer_chain": qe_chain,
            "qe_identity": qe_body.identity.get(),
            "qe_identity_signature": qe_body.signature,
        });
        Ok(Cached {
            json: json.to_string().into_bytes(),
            next_update,
        })
    }
}

impl CollateralSource for Pccs {
    fn collateral(&self, quote: &[u8], now: u64) -> Result<Vec<u8>, CollateralError> {
        let parsed = Quote::parse(quote).map_err(quote_err("quote"))?;
        let fmspc = hex::encode_upper(
            dcap_qvl::intel::quote_fmspc(&parsed).map_err(quote_err("quote FMSPC"))?,
        );
        let ca = dcap_qvl::intel::quote_ca(&parsed)
            .map_err(quote_err("quote PCK CA"))?
            .as_id_str()
            .to_owned();
        let key = (fmspc.clone(), ca.clone());
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if now < c.next_update {
                return Ok(c.json.clone());
            }
        }
        let fresh = self
            .fetch(&fmspc, &ca)
            .map_err(|error| CollateralError::Pccs {
                endpoint: format!("{}:{}", self.host, self.port),
                fmspc: fmspc.clone(),
                error,
            })?;
        let json = fresh.json.clone();
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, fresh);
        Ok(json)
    }
}

/// `nextUpdate` of a TCB info or QE identity object, UNIX seconds.
fn next_update_json(raw: &str) -> Result<u64, PccsError> {
    #[derive(Deserialize)]
    struct Dates {
        #[serde(rename = "nextUpdate")]
        next_update: String,
    }
    let d: Dates = serde_json::from_str(raw).map_err(|e| part("nextUpdate")(&e))?;
    parse_rfc3339(&d.next_update).ok_or_else(|| PccsError::Part {
        what: "nextUpdate",
        reason: format!("{:?} is not a UTC time", d.next_update),
    })
}

fn next_update_crl(der: &[u8]) -> Result<u64, PccsError> {
    let crl_part = part("CRL");
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| crl_part(&e))?;
    let t = crl
        .next_update()
        .ok_or_else(|| crl_part(&"no nextUpdate"))?;
    u64::try_from(t.timestamp()).map_err(|_| crl_part(&"nextUpdate is before 1970"))
}

/// `YYYY-MM-DDTHH:MM:SSZ` (fractions allowed) to UNIX seconds.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> Result<Self, &'static str> {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no end of headers")?;
        let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or("no status line")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
        {
            body = dechunk(&body)?;
        }
        if body.len() > MAX_BODY {
            return Err("body over 4 MiB");
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A URL-encoded PEM chain header, decoded.
    fn issuer_chain(&self, name: &str) -> Result<String, PccsError> {
        let header = |error| PccsError::Header {
            name: name.to_string(),
            error,
        };
        let v = self
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| header("missing"))?;
        percent_decode(v).ok_or_else(|| header("not URL-encoded text"))
    }
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 || out.len() + size > MAX_BODY {
            return Err("truncated or oversized chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_and_urls_are_read() {
        assert_eq!(parse_rfc3339("2025-07-19T10:00:35Z"), Some(1_752_919_235));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.5Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-07-19 10:00:35"), None);
        assert!(Pccs::new("https://pccs").is_err());
        let p = Pccs::new("http://127.0.0.1:8081/pccs/").unwrap();
        assert_eq!((p.port, p.prefix.as_str()), (8081, "/pccs"));
        assert_eq!(percent_decode("a%20b%2Bc").as_deref(), Some("a b+c"));
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
    }
}
