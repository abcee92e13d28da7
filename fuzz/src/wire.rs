//! The wire protocol between client, proxy and worker: each gRPC message a
//! peer can send, decoded, and its fields read as the receiving node reads
//! them (endpoints, prices, trust, coefficients, addresses, vouchers, sealed
//! bodies, certificates).

use cocoon_proto::{
    convert, infer_event, proxy_message, worker_event, worker_message, InferEvent, InferRequest,
    ProxyHello, ProxyMessage, RosterResponse, SealedBody, WorkerMessage,
};
use prost::Message;

/// One message (the selector picks which kind) read by its receiver.
pub(crate) fn wire_protocol(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    match select % 6 {
        0 => WorkerMessage::decode(rest).map(worker_message).is_ok(),
        1 => ProxyMessage::decode(rest).map(proxy_message).is_ok(),
        2 => InferRequest::decode(rest).map(infer_request).is_ok(),
        3 => InferEvent::decode(rest).map(infer_event).is_ok(),
        4 => ProxyHello::decode(rest).map(proxy_hello).is_ok(),
        _ => RosterResponse::decode(rest).map(roster).is_ok(),
    }
}

/// At the proxy, from a worker.
fn worker_message(m: WorkerMessage) {
    match m.msg {
        Some(worker_message::Msg::Hello(h)) => {
            let _ = convert::model_hash(&h.model_hash);
            let _ = convert::coefficient(h.coefficient);
            let _ = h.worker_address.parse::<tycho_types::models::StdAddr>();
            let _ = crate::tee::sim_verifier().verify(
                &h.certificate,
                &[cocoon_core::Role::Worker],
                crate::tee::RATLS_AT,
            );
            if let Ok(contract) = h.worker_address.parse() {
                let digest = ring::digest::digest(&ring::digest::SHA256, &h.certificate);
                let mut sha = [0u8; 32];
                sha.copy_from_slice(digest.as_ref());
                let _ = cocoon_chain::wallet::verify_worker_owner(
                    &h.owner_key,
                    &h.owner_signature,
                    &sha,
                    &contract,
                );
            }
        }
        Some(worker_message::Msg::Update(u)) => {
            let _ = convert::coefficient(u.coefficient);
        }
        Some(worker_message::Msg::Event(e)) => {
            let _ = cocoon_core::RequestId::parse(&e.request_id);
            if let Some(c) = e.so_far {
                let _ = cocoon_core::Usage::from(&c);
            }
            match e.event {
                Some(worker_event::Event::Done(d)) => {
                    let _ = d.cost();
                    let _ = d.usage();
                }
                Some(worker_event::Event::Chunk(c)) => {
                    let _ = serde_json::from_slice::<serde_json::Value>(&c);
                }
                _ => {}
            }
        }
        Some(worker_message::Msg::Certificate(c)) => {
            let _ = cocoon_tee::cert::parse(&c.der);
        }
        None => {}
    }
}

/// At the worker, from its proxy.
fn proxy_message(m: ProxyMessage) {
    match m.msg {
        Some(proxy_message::Msg::Welcome(w)) => {
            let _ = w.contract_address.parse::<tycho_types::models::StdAddr>();
            if !w.worker_voucher.is_empty() {
                if let Ok(v) = cocoon_pay::SignedVoucher::from_boc(&w.worker_voucher) {
                    if let Ok(key) = <[u8; 32]>::try_from(&w.voucher_key[..]) {
                        let _ = v.verify_signature(&key);
                    }
                }
            }
        }
        Some(proxy_message::Msg::Request(r)) => {
            let _ = cocoon_core::RequestId::parse(&r.request_id);
            let _ = convert::endpoint(r.endpoint);
            let _ = convert::coefficient(r.coefficient);
            if let Some(p) = &r.prices {
                let _ = convert::prices(p);
                let _ = convert::tier_prices(p);
            }
            if let Some(s) = &r.sealed {
                open_sealed(&r.request_id, s);
            }
        }
        Some(proxy_message::Msg::Voucher(v)) => {
            let _ = cocoon_pay::SignedVoucher::from_boc(&v.voucher);
        }
        Some(proxy_message::Msg::Score(s)) => {
            let _ = convert::endpoint(s.endpoint);
            let _ = serde_json::from_slice::<serde_json::Value>(&s.body);
        }
        Some(proxy_message::Msg::Cancel(_)) | None => {}
    }
}

/// A sealed body opened with the worker's key: hostile framing (lengths,
/// keys, padding) must fail cleanly.
fn open_sealed(request_id: &str, s: &SealedBody) {
    let key = cocoon_seal::WorkerKey::from_secret([3; 32]);
    let Ok(ephemeral) = <[u8; 32]>::try_from(&s.ephemeral_key[..]) else {
        return;
    };
    let binding = cocoon_seal::Binding {
        request_id,
        endpoint: "chat",
        stream: false,
        model: &s.model,
        max_tokens: s.max_tokens,
        deterministic: s.deterministic,
    };
    for wrapped in &s.keys {
        let _ = key.open(&ephemeral, &wrapped.wrapped, &s.ciphertext, &binding);
    }
}

/// At the proxy, from a client.
fn infer_request(r: InferRequest) {
    let _ = cocoon_core::RequestId::parse(&r.request_id);
    let _ = convert::endpoint(r.endpoint);
    let _ = convert::trust(r.trust.as_ref(), r.replicas);
    if let Ok(payer) = r.client_address.parse::<tycho_types::models::StdAddr>() {
        let _ = cocoon_chain::wallet::verify_payer(
            &r.payer_key,
            &r.payer_signature,
            &r.request_id,
            &payer,
        );
    }
    if let Some(s) = &r.sealed {
        open_sealed(&r.request_id, s);
    }
}

/// At the client, from its proxy.
fn infer_event(e: InferEvent) {
    match e.event {
        Some(infer_event::Event::Assigned(a)) => {
            let _ = cocoon_tee::cert::parse(&a.worker_certificate);
        }
        Some(infer_event::Event::Done(d)) => {
            let _ = d.cost();
        }
        Some(infer_event::Event::Chunk(c)) => {
            let _ = serde_json::from_slice::<serde_json::Value>(&c);
        }
        _ => {}
    }
}

/// At the client, the proxy's terms.
fn proxy_hello(h: ProxyHello) {
    let _ = h.contract_address.parse::<tycho_types::models::StdAddr>();
    if let Some(p) = &h.prices {
        let _ = convert::prices(p);
        let _ = convert::tier_prices(p);
    }
}

/// At the client, the workers a request may be sealed to.
fn roster(r: RosterResponse) {
    for w in r.workers {
        let _ = convert::coefficient(w.coefficient);
        let _ = crate::tee::sim_verifier().verify(
            &w.certificate,
            &[cocoon_core::Role::Worker],
            crate::tee::RATLS_AT,
        );
    }
}
