//! Seed inputs: genuine examples of what each target reads, made with the
//! project's own encoders and signers and the recorded hardware evidence,
//! so the fuzzer starts from inputs that go all the way through. Made
//! afresh for every run (`fuzz-seeds`), never stored: they follow the
//! formats as the code changes.

use base64::Engine as _;
use cocoon_chain::toncenter::wire::{
    BlockIdExt, Envelope, Fees, FullAccountState, MasterchainInfo, QueryFees, RawTransaction,
    RunResult, TransactionIdJson,
};
use cocoon_chain::{Transfer, WalletKey, WalletV5};
use cocoon_core::{BasisPoints, ModelHash, Nanoton, PriceList, Role};
use cocoon_devnet::Devnet;
use cocoon_pay::{Voucher, VoucherKind, VoucherSigner};
use cocoon_receipt::evidence::{SignedEvidence, SlashEvidence};
use cocoon_receipt::{
    digest, ProxyIdentity, ReceiptBody, ReceiptSigner, ReceiptUsage, SignedReceipt,
    SignedReceiptFacts,
};
use cocoon_tee::Claims;
use prost::Message;
use ring::signature::KeyPair;
use serde::Serialize;
use tycho_types::boc::Boc;
use tycho_types::cell::{Cell, CellFamily, HashBytes};
use tycho_types::models::{StdAddr, Transaction};

use crate::{api, fixtures, money, tee};

/// The devnet's frozen clock in the intake target.
pub const DEVNET_CLOCK: u32 = 1_790_000_000;

/// One seed input.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target it is for.
    pub target: &'static str,
    /// A file name that says what it is.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: &str, select: Option<u8>, body: &[u8]) -> Seed {
    let mut bytes = select.map(|s| vec![s]).unwrap_or_default();
    bytes.extend_from_slice(body);
    Seed {
        target,
        name: name.to_string(),
        bytes,
    }
}

/// Every seed, for every target.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(openai());
    out.extend(engine());
    out.extend(evidence());
    out.extend(wire());
    out.extend(money_seeds());
    out.extend(chain());
    out.extend(telegram());
    out
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

fn openai() -> Vec<Seed> {
    let t = "openai_request";
    let full = r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":16,"temperature":0,"top_p":0.9,"stop":["\n"],"seed":7,"logit_bias":{"50256":-100},"user":"u1","cocoon":{"trust":{"tee":["tdx"],"tcb":"up_to_date","replicas":2},"max_coefficient":1500,"e2e":"off"}}"#;
    let tools = r#"{"model":"m","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}],"tools":[{"type":"function","function":{"name":"w","parameters":{"type":"object"}}}],"response_format":{"type":"json_object"},"n":1}"#;
    let completion =
        r#"{"model":"m","prompt":"Once upon","max_tokens":8,"echo":false,"logprobs":2}"#;
    let headers = format!(
        "x-cocoon-trust-tee: tdx, sev-snp\nx-cocoon-trust-regions: eu\nx-cocoon-e2e: off\nx-cocoon-max-coefficient: 1500\nx-cocoon-timeout-ms: 5000\n\n{CHAT}"
    );
    vec![
        seed(t, "chat", Some(0), CHAT.as_bytes()),
        seed(t, "chat-full", Some(0), full.as_bytes()),
        seed(t, "chat-tools", Some(0), tools.as_bytes()),
        seed(t, "completion", Some(1), completion.as_bytes()),
        seed(t, "chat-headers", Some(2), headers.as_bytes()),
        seed(t, "chat-app-defaults", Some(4), full.as_bytes()),
    ]
}

fn engine() -> Vec<Seed> {
    let t = "engine_stream";
    let stream = concat!(
        "data: {\"id\":\"c1\",\"created\":7,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
        ": keep-alive\r\n\r\n",
        "data: {\"id\":\"c1\",\"model\":\"served\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n",
        "data: [DONE]\n\n"
    );
    let no_done = "event: message\ndata: {\"choices\":[{\"delta\":{}}],\n\ndata: \"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\r\rdata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n";
    let failed = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"out of memory\"}}\n\n";
    vec![
        seed(t, "stream", Some(6), stream.as_bytes()),
        seed(t, "stream-whole", Some(63), stream.as_bytes()),
        seed(t, "usage-without-done", Some(0), no_done.as_bytes()),
        seed(t, "error-mid-stream", Some(9), failed.as_bytes()),
    ]
}

fn evidence() -> Vec<Seed> {
    let worker = SimWorker::new();
    let cert = cocoon_tee::cert::parse(&worker.der).expect("a minted certificate parses");
    vec![
        seed("tdx_quote", "quote", None, fixtures::TDX_QUOTE),
        seed(
            "tdx_quote",
            "quote-outdated",
            None,
            fixtures::TDX_QUOTE_OUTDATED,
        ),
        seed(
            "tdx_quote",
            "quote-cocoon",
            None,
            fixtures::TDX_COCOON_QUOTE,
        ),
        seed("snp_report", "report-milan", None, &fixtures::snp_report()),
        seed(
            "nvidia_report",
            "hopper-report",
            Some(0),
            &fixtures::gpu_report(),
        ),
        seed(
            "nvidia_report",
            "hopper-chain",
            Some(1),
            fixtures::GPU_CHAIN,
        ),
        seed("ratls_cert", "worker-certificate", Some(0), &worker.der),
        seed("ratls_cert", "claims", Some(1), &cert.claims.encode()),
        seed("ratls_cert", "sim-evidence", Some(2), &cert.evidence_bytes),
    ]
}

/// A sim-attested worker with a receipt key, as the targets' verifier
/// accepts it.
struct SimWorker {
    der: Vec<u8>,
    signer: ReceiptSigner,
}

impl SimWorker {
    fn new() -> SimWorker {
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .expect("a key");
        let receipt_key: [u8; 32] = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .expect("its own key")
            .public_key()
            .as_ref()
            .try_into()
            .expect("32 bytes");
        let claims = Claims {
            public_key: [0; 32],
            role: Role::Worker,
            issued_at: tee::RATLS_AT - 10,
            expires_at: tee::RATLS_AT + 3600,
            config_hash: [0; 32],
            model_hash: Some(ModelHash::from_bytes([7; 32])),
            receipt_key: Some(receipt_key),
            e2e_key: Some(cocoon_seal::WorkerKey::from_secret([3; 32]).public()),
            region: None,
        };
        let minted = cocoon_tee::cert::mint(claims, &tee::sim_attester()).expect("a sim mint");
        let (kind, image) = tee::sim_verifier()
            .inspect_own(&minted.der, tee::RATLS_AT)
            .expect("the targets' verifier accepts it");
        let signer =
            ReceiptSigner::new(minted.der.clone(), pkcs8.as_ref(), Some(kind), Some(image))
                .expect("the claims name the receipt key");
        SimWorker {
            der: minted.der,
            signer,
        }
    }

    fn receipt(&self, answer: &str) -> SignedReceipt {
        self.signer
            .sign(receipt_body(answer))
            .expect("a receipt signs")
    }
}

fn prices() -> PriceList {
    let bp = |v| BasisPoints::new(v).expect("basis points");
    PriceList::new(
        Nanoton::new(20),
        Nanoton::new(15),
        [bp(10_000), bp(2_500), bp(20_000), bp(15_000)],
    )
    .expect("a price list")
}

fn receipt_body(answer: &str) -> ReceiptBody {
    let usage = ReceiptUsage {
        prompt_tokens: 10,
        cached_tokens: 4,
        completion_tokens: 5,
        reasoning_tokens: 0,
    };
    let charge = prices()
        .cost(&usage.into(), cocoon_core::Coefficient::ONE)
        .expect("a charge");
    let at = tee::RATLS_AT * 1000;
    ReceiptBody {
        version: 0,
        request_id: "req-1".into(),
        request_sha256: digest::sha256_hex(CHAT.as_bytes()),
        stream: false,
        answer_sha256: digest::whole_answer(answer.as_bytes()),
        content_sha256: Some(digest::content(false, &[answer])),
        response_id: "chatcmpl-1".into(),
        model: "m".into(),
        model_hash: Some(hex::encode([7; 32])),
        usage,
        worker: "w1".into(),
        worker_certificate_sha256: String::new(),
        tee: None,
        image_hash: None,
        coefficient: 1000,
        prices: Some(prices()),
        cost_nanoton: Some(charge.client.get()),
        worker_fee_nanoton: Some(charge.worker.get()),
        proxy: ProxyIdentity {
            name: "p".into(),
            contract: None,
        },
        started_at_ms: at,
        finished_at_ms: at + 250,
    }
}

fn money_seeds() -> Vec<Seed> {
    let signer = VoucherSigner::from_seed(&money::PROXY_SEED).expect("a key");
    let voucher = |kind| {
        let v = Voucher {
            kind,
            contract: money::contract(),
            party: money::party(),
            total: Nanoton::new(1_000_000),
            seqno: 1,
            expires_at: (money::VOUCHER_AT + 3600) as u32,
        };
        signer
            .sign(v)
            .and_then(|s| s.to_boc())
            .expect("a voucher signs")
    };
    let worker = SimWorker::new();
    let honest = r#"{"id":"a","choices":[{"message":{"content":"hello"},"finish_reason":"stop"}]}"#;
    let wrong = r#"{"id":"b","choices":[{"message":{"content":"HELLO"},"finish_reason":"stop"}]}"#;
    let receipt_only = serde_json::json!({
        "receipt": worker.receipt(honest),
        "worker_certificate": base64::engine::general_purpose::STANDARD.encode(&worker.der),
    });
    // Three workers of one image and weights: one dissents.
    let facts = |w: &SimWorker, answer| {
        SignedReceiptFacts::of(&w.receipt(answer), w.signer.public_key())
            .expect("facts of a receipt")
    };
    let evidence = SlashEvidence {
        worker: StdAddr::new(0, [0x44; 32].into()),
        client_owner: StdAddr::new(0, [0x55; 32].into()),
        expires_at: 1_800_000_000,
        accused: facts(&worker, wrong),
        first: facts(&SimWorker::new(), honest),
        second: facts(&SimWorker::new(), honest),
    };
    let slash = SignedEvidence::sign(evidence, |h| signer.sign_cell_hash(h))
        .and_then(|e| e.to_boc())
        .expect("evidence signs");
    vec![
        seed("voucher", "client", Some(0), &voucher(VoucherKind::Client)),
        seed("voucher", "worker", Some(1), &voucher(VoucherKind::Worker)),
        seed(
            "receipt",
            "receipt-only",
            Some(0),
            receipt_only.to_string().as_bytes(),
        ),
        seed("receipt", "slash-evidence", Some(1), &slash),
    ]
}

fn wire() -> Vec<Seed> {
    let worker = SimWorker::new();
    let prices = cocoon_proto::Prices::from(&prices());
    let mut messages = worker_messages(&worker);
    messages.extend(proxy_messages(&prices));
    messages.extend(client_messages(&worker, prices));
    messages
        .into_iter()
        .map(|(name, select, bytes)| seed("wire_protocol", name, Some(select), &bytes))
        .collect()
}

/// A wire message seed: its name, the target's selector, its bytes.
type WireSeed = (&'static str, u8, Vec<u8>);

/// What a worker sends its proxy.
fn worker_messages(worker: &SimWorker) -> Vec<WireSeed> {
    use cocoon_proto as p;
    vec![
        (
            "worker-hello",
            0,
            p::WorkerMessage {
                msg: Some(p::worker_message::Msg::Hello(p::WorkerHello {
                    protocol_version: cocoon_core::PROTOCOL_VERSION,
                    worker_id: "w1".into(),
                    model: "m".into(),
                    coefficient: 1000,
                    max_active_requests: 4,
                    model_hash: hex::encode([7; 32]),
                    worker_address: money::party().to_string(),
                    certificate: worker.der.clone().into(),
                    owner_key: vec![1; 32].into(),
                    owner_signature: vec![2; 64].into(),
                })),
            }
            .encode_to_vec(),
        ),
        (
            "worker-event",
            0,
            p::WorkerMessage {
                msg: Some(p::worker_message::Msg::Event(p::WorkerEvent {
                    request_id: "req-1".into(),
                    event: Some(p::worker_event::Event::Chunk(
                        br#"{"choices":[{"delta":{"content":"hi"}}]}"#.to_vec().into(),
                    )),
                    so_far: Some(p::TokenCounts::from(cocoon_core::Usage {
                        prompt: 3,
                        completion: 1,
                        ..Default::default()
                    })),
                })),
            }
            .encode_to_vec(),
        ),
    ]
}

/// What a proxy sends a worker.
fn proxy_messages(prices: &cocoon_proto::Prices) -> Vec<WireSeed> {
    use cocoon_proto as p;
    let sealed = sealed_body("req-1");
    vec![(
        "work-request",
        1,
        p::ProxyMessage {
            msg: Some(p::proxy_message::Msg::Request(p::WorkRequest {
                request_id: "req-1".into(),
                endpoint: p::Endpoint::ChatCompletions as i32,
                body: Default::default(),
                stream: false,
                timeout_ms: 1000,
                prices: Some(prices.clone()),
                coefficient: 1000,
                sealed: Some(sealed.clone()),
            })),
        }
        .encode_to_vec(),
    )]
}

/// What a client and its proxy send each other.
fn client_messages(worker: &SimWorker, prices: cocoon_proto::Prices) -> Vec<WireSeed> {
    use cocoon_proto as p;
    vec![
        (
            "infer-request",
            2,
            p::InferRequest {
                request_id: "req-1".into(),
                model: "m".into(),
                endpoint: p::Endpoint::ChatCompletions as i32,
                body: CHAT.as_bytes().to_vec().into(),
                stream: true,
                max_coefficient: 1500,
                timeout_ms: 5000,
                client_address: money::party().to_string(),
                max_tokens: 16,
                replicas: 2,
                trust: Some(p::TrustRequirements::from(
                    &serde_json::from_str::<cocoon_core::trust::TrustRequirements>(
                        r#"{"tee":["tdx"],"tcb":"up_to_date","regions":["eu"]}"#,
                    )
                    .expect("trust requirements"),
                )),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "infer-event",
            3,
            p::InferEvent {
                event: Some(p::infer_event::Event::Chunk(
                    CHAT.as_bytes().to_vec().into(),
                )),
            }
            .encode_to_vec(),
        ),
        (
            "proxy-hello",
            4,
            p::ProxyHello {
                protocol_version: cocoon_core::PROTOCOL_VERSION,
                proxy_name: "p".into(),
                payments: true,
                voucher_key: vec![9; 32].into(),
                contract_address: money::contract().to_string(),
                prices: Some(prices),
                default_max_tokens: 256,
            }
            .encode_to_vec(),
        ),
        (
            "roster",
            5,
            p::RosterResponse {
                workers: vec![p::RosterEntry {
                    worker_id: "w1".into(),
                    certificate: worker.der.clone().into(),
                    coefficient: 1000,
                }],
            }
            .encode_to_vec(),
        ),
    ]
}

/// A chat body sealed to the wire target's worker key.
fn sealed_body(request_id: &str) -> cocoon_proto::SealedBody {
    let worker = cocoon_seal::WorkerKey::from_secret([3; 32]).public();
    let binding = cocoon_seal::Binding {
        request_id,
        model: "m",
        endpoint: "chat",
        stream: false,
        max_tokens: 16,
        deterministic: false,
    };
    let (sealed, _) =
        cocoon_seal::seal(CHAT.as_bytes(), &binding, &[worker]).expect("a body seals");
    cocoon_proto::SealedBody {
        ephemeral_key: sealed.ephemeral.to_vec().into(),
        keys: sealed
            .keys
            .into_iter()
            .map(|(worker_key, wrapped)| cocoon_proto::WrappedKey {
                worker_key: worker_key.to_vec().into(),
                wrapped: wrapped.into(),
            })
            .collect(),
        ciphertext: sealed.ciphertext.into(),
        model: "m".into(),
        max_tokens: 16,
        deterministic: false,
    }
}

/// The wallet whose messages seed the devnet target.
pub fn wallet(global_id: i32) -> WalletV5 {
    let key = WalletKey::from_seed(&[5; 32]).expect("a wallet key");
    WalletV5::new(key, global_id).expect("a wallet")
}

/// Gives the seed wallet TON on `devnet`, so its deploying transfer is
/// accepted.
pub fn fund_wallet(devnet: &Devnet) {
    let address = wallet(devnet.global_id()).address();
    devnet
        .faucet(&address, tycho_types::num::Tokens::new(10_000_000_000))
        .expect("the faucet pays");
}

/// The seed wallet's first transfer, deploying it.
fn deploying_transfer(global_id: i32) -> Cell {
    let transfer = Transfer {
        to: StdAddr::new(0, [0x66; 32].into()),
        value: Nanoton::new(1_000_000),
        bounce: false,
        body: None,
        init: None,
    };
    wallet(global_id)
        .transfer(0, DEVNET_CLOCK + 600, &[transfer], true)
        .expect("a transfer builds")
}

fn envelope<T: Serialize>(result: T) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        ok: true,
        result: Some(result),
        error: None,
        code: None,
    })
    .expect("JSON")
}

/// The devnet's seed (the wallet's deploying transfer) and the
/// transactions it made, as toncenter lists them.
fn devnet_seeds() -> (Seed, Vec<RawTransaction>) {
    let dir = tempfile_dir("seeds-devnet");
    let devnet = Devnet::open(
        &dir,
        cocoon_devnet::DevnetOptions {
            dev: true,
            frozen_clock: Some(DEVNET_CLOCK),
            ..Default::default()
        },
    )
    .expect("a devnet");
    fund_wallet(&devnet);
    let global_id = devnet.global_id();
    let message = deploying_transfer(global_id);
    let intake = seed(
        "devnet_intake",
        "wallet-deploy",
        None,
        &Boc::encode(&message),
    );
    let _ = devnet.send_external(message);
    let address = wallet(global_id).address();
    let transactions: Vec<RawTransaction> = devnet
        .transactions(&address, None, 4)
        .unwrap_or_default()
        .iter()
        .filter_map(|cell| {
            let tx = cell.parse::<Transaction>().ok()?;
            Some(RawTransaction {
                kind: "raw.transaction".into(),
                address: None,
                utime: tx.now,
                data: cocoon_chain::toncenter::wire::boc_base64(cell),
                transaction_id: TransactionIdJson::new(tx.lt, cell.repr_hash()),
                fee: 1000,
                storage_fee: 0,
                other_fee: 1000,
                in_msg: None,
                out_msgs: Vec::new(),
            })
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (intake, transactions)
}

fn chain() -> Vec<Seed> {
    let (intake, transactions) = devnet_seeds();
    let mut out = vec![intake];
    let block = BlockIdExt::masterchain(7, &HashBytes([8; 32]));
    let account = FullAccountState {
        kind: "raw.fullAccountState".into(),
        balance: 9_000_000_000,
        extra_currencies: Vec::new(),
        code: cocoon_chain::toncenter::wire::boc_base64(&Cell::empty_cell()),
        data: String::new(),
        last_transaction_id: TransactionIdJson::new(5, &HashBytes([1; 32])),
        block_id: block.clone(),
        frozen_hash: String::new(),
        sync_utime: i64::from(DEVNET_CLOCK),
        state: "active".into(),
    };
    let stack = [
        cocoon_chain::StackEntry::Int(42.into()),
        cocoon_chain::StackEntry::Cell(Cell::empty_cell()),
        cocoon_chain::StackEntry::Tuple(vec![cocoon_chain::StackEntry::Int((-1).into())]),
    ];
    let run = RunResult {
        kind: "smc.runResult".into(),
        gas_used: 1234,
        stack: stack
            .iter()
            .map(cocoon_chain::toncenter::wire::encode_result)
            .collect(),
        exit_code: 0,
    };
    let info = MasterchainInfo {
        kind: "blocks.masterchainInfo".into(),
        last: block.clone(),
        state_root_hash: String::new(),
        init: block,
    };
    let fees = QueryFees {
        kind: "query.fees".into(),
        source_fees: Fees {
            gas_fee: 100,
            ..Default::default()
        },
        destination_fees: Vec::new(),
    };
    let t = "toncenter_json";
    out.extend([
        seed(t, "account", Some(0), &envelope(account)),
        seed(t, "run-get-method", Some(1), &envelope(run)),
        seed(t, "transactions", Some(2), &envelope(transactions)),
        seed(t, "masterchain-info", Some(3), &envelope(info)),
        seed(t, "estimate-fee", Some(4), &envelope(fees)),
        seed(
            t,
            "refused",
            Some(0),
            br#"{"ok":false,"error":"LITE_SERVER_UNKNOWN: cannot apply external message","code":500}"#,
        ),
    ]);
    out
}

/// A folder of this call's own under the temporary folder (seeds may be
/// made by several threads of one process at once).
fn tempfile_dir(what: &str) -> std::path::PathBuf {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("cocoon-fuzz-{what}-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn telegram() -> Vec<Seed> {
    let init_data = cocoon_client::access::telegram::InitDataKey::from_bot_token(api::BOT_TOKEN)
        .sign(
            cocoon_client::access::telegram::TelegramUserId(42),
            api::INIT_DATA_AT,
        );
    // A private message from user 42 with `content` (its text, or its
    // document and caption).
    let update = |content: serde_json::Value| {
        let mut message = serde_json::json!({
            "message_id": 2,
            "date": 1_790_000_000,
            "chat": {"id": 42, "type": "private", "first_name": "Ada"},
            "from": {"id": 42, "is_bot": false, "first_name": "Ada"},
        });
        for (k, v) in content.as_object().into_iter().flatten() {
            message[k] = v.clone();
        }
        serde_json::json!({"update_id": 1, "message": message}).to_string()
    };
    let text = |t: &str| update(serde_json::json!({ "text": t }));
    let document = update(serde_json::json!({
        "document": {"file_id": "f1", "file_unique_id": "u1", "file_name": "memo.md", "mime_type": "text/markdown", "file_size": 120},
        "caption": "summarise"
    }));
    let memo = "# Supplier review\n\nThe supplier delivered late twice.\n\n* Price: up 4%\n* Quality: fine\n\nRecommendation: renew for one year, with penalties.";
    let t = "bot_update";
    vec![
        seed("telegram_init_data", "signed", None, init_data.as_bytes()),
        seed(t, "text", Some(0), text("What is TON?").as_bytes()),
        seed(
            t,
            "command",
            Some(0),
            text("/model@cocoon_bot m").as_bytes(),
        ),
        seed(t, "document-update", Some(0), document.as_bytes()),
        seed(t, "markdown", Some(1), memo.as_bytes()),
        seed(t, "text-file", Some(4), memo.as_bytes()),
    ]
}
