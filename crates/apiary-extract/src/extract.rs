//! Dispatch from a service name to the parser for its payloads.

use crate::attr::{Attr, AttrName, Attribute};
use crate::proto::http::Request;
use crate::proto::{dns, http, lineproto, memcached, mysql, redis, shell, vnc};
use crate::service::{self, Service};
use crate::sink::Sink;

/// Calls `visit` once per attribute found in `payload`, a remote host's bytes
/// sent to `service` (a sensor's service name such as `HTTP` or `SIP.udp`).
///
/// This is the allocation-free form: values are borrowed and valid only during
/// the call. Never panics; at most [`crate::MAX_ATTRIBUTES`] values.
pub fn extract_each(service: &str, payload: &[u8], visit: &mut dyn FnMut(Attr<'_>)) {
    let svc = Service::parse(service);
    let req = if svc.is_http() || svc == Service::Other { Request::parse_http(payload) } else { None };
    extract_parsed(svc, service, payload, req.as_ref(), visit);
}

/// Like [`extract_each`], collecting owned attributes.
pub fn extract(service: &str, payload: &[u8]) -> Vec<Attribute> {
    let mut out = Vec::new();
    extract_each(service, payload, &mut |a| out.push(a.to_owned()));
    out
}

/// The dispatch proper, with the HTTP request already parsed (or not) so that
/// CVE matching can share the parse.
pub(crate) fn extract_parsed(
    svc: Service,
    name: &str,
    payload: &[u8],
    req: Option<&Request<'_>>,
    visit: &mut dyn FnMut(Attr<'_>),
) {
    if payload.is_empty() {
        return;
    }
    let mut sink = Sink::new(visit, payload);
    let found = match svc {
        Service::Http | Service::Https | Service::Other => match req {
            Some(req) => {
                http::extract(req, svc == Service::Https, &mut sink);
                true
            }
            None => false,
        },
        Service::Sip => match Request::parse_sip(payload) {
            Some(req) => {
                http::extract_sip(&req, &mut sink);
                true
            }
            None => false,
        },
        Service::Redis => redis::extract(payload, &mut sink),
        Service::Memcached => memcached::extract(payload, &mut sink),
        Service::Telnet | Service::Ssh => {
            // Encrypted SSH packets are noise, not a payload worth keeping.
            shell::extract(payload, &mut sink) || svc == Service::Ssh
        }
        Service::Ftp => lineproto::extract_ftp(payload, &mut sink),
        Service::Smtp => lineproto::extract_smtp(payload, &mut sink),
        Service::Mysql => mysql::extract(payload, &mut sink),
        Service::Vnc => vnc::extract(payload, &mut sink),
        Service::Dns => dns::extract(payload, service::is_tcp(name), &mut sink),
    };
    if !found {
        sink.emit(AttrName::Payload, payload);
    }
}
