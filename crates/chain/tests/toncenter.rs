//! The toncenter v2 client against toncenter's documented answers
//! (tests/fixtures/toncenter, see its README), served on loopback: the real
//! service cannot be reached from tests. Also: failover to the next
//! endpoint, and a refused message returned at once, not retried.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use cocoon_chain::stack::StackReader;
use cocoon_chain::{AccountStatus, Chain, ChainError, Toncenter, ToncenterConfig};
use tycho_types::cell::CellBuilder;
use tycho_types::models::{StdAddr, StdAddrFormat};

fn fixture(name: &str) -> String {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    std::fs::read_to_string(dir.join("tests/fixtures/toncenter").join(name)).expect("fixture")
}

#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    with_key: AtomicUsize,
}

/// Serves the fixture named after the method; `sendBoc` is refused.
async fn serve(seen: Arc<Seen>) -> String {
    async fn answer(
        State(seen): State<Arc<Seen>>,
        uri: Uri,
        headers: HeaderMap,
    ) -> impl IntoResponse {
        seen.calls.fetch_add(1, Ordering::SeqCst);
        if headers.get("x-api-key").is_some_and(|v| v == "secret") {
            seen.with_key.fetch_add(1, Ordering::SeqCst);
        }
        let method = uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let (status, name) = match method.as_str() {
            "sendBoc" => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "sendBoc-refused.json".to_string(),
            ),
            m => (StatusCode::OK, format!("{m}.json")),
        };
        (
            status,
            [("content-type", "application/json")],
            fixture(&name),
        )
    }
    let app = Router::new().fallback(answer).with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/v2")
}

/// An endpoint nobody listens on.
async fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}/api/v2")
}

fn client(endpoints: Vec<String>) -> Toncenter {
    Toncenter::new(ToncenterConfig {
        endpoints,
        api_key: Some("secret".into()),
        timeout: Duration::from_secs(5),
        attempts: 3,
    })
    .expect("client")
}

fn addr(s: &str) -> StdAddr {
    StdAddr::from_str_ext(s, StdAddrFormat::any())
        .expect("address")
        .0
}

#[tokio::test]
async fn reads_every_documented_answer() {
    let seen = Arc::new(Seen::default());
    let c = client(vec![serve(seen.clone()).await]);
    let wallet = addr("EQAVKMzqtrvNB2SkcBONOijadqFZ1gMdjmzh1Y3HB1p_zai5");

    let account = c.account(&wallet).await.expect("getAddressInformation");
    assert_eq!(account.balance.get(), 1_000_000_000);
    assert_eq!(account.status, AccountStatus::Uninit);
    assert!(account.code.is_none() && account.data.is_none());
    assert_eq!(
        account.last_transaction.expect("a last transaction").lt,
        46_748_895_000_001
    );

    let txs = c
        .transactions(&wallet, None, 2)
        .await
        .expect("getTransactions");
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].id.lt, 1_944_556_000_003);
    assert_eq!(txs[0].fee.get(), 33);
    assert_eq!(txs[1].utime, 1_658_126_823);
    // The client checked each bag of cells against its id; check it here too.
    for t in &txs {
        assert_eq!(*t.cell.repr_hash(), t.id.hash);
    }

    let out = c
        .run_get_method(&wallet, "get_nft_data", &[])
        .await
        .expect("runGetMethod");
    assert!(out.succeeded());
    assert_eq!(out.gas_used, 1581);
    let mut r = StackReader::new(out.stack);
    assert_eq!(r.int().expect("init").to_string(), "-1");
    assert!(r.int().is_ok());
    // Addresses come back as cells holding a slice.
    let collection = r.address().expect("collection address");
    assert_eq!(collection.workchain, 0);
    r.address().expect("owner address");
    r.cell().expect("content");

    assert_eq!(
        c.head().await.expect("getMasterchainInfo").seqno,
        38_093_956
    );

    let body = CellBuilder::new().build().expect("cell");
    let fee = c
        .estimate_fee(&wallet, &body, None)
        .await
        .expect("estimateFee");
    assert_eq!(fee.total(), 0);

    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        seen.with_key.load(Ordering::SeqCst),
        "every call carried the API key"
    );
}

#[tokio::test]
async fn a_refused_message_is_reported_at_once_not_retried() {
    let seen = Arc::new(Seen::default());
    let c = client(vec![serve(seen.clone()).await]);
    let msg = CellBuilder::new().build().expect("cell");
    match c.send_message(&msg).await {
        Err(ChainError::Refused { code, message, .. }) => {
            assert_eq!(code, 500);
            assert!(
                message.contains("cannot apply external message"),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        1,
        "a refusal is not sent again"
    );
}

#[tokio::test]
async fn a_dead_endpoint_fails_over_to_the_next() {
    let seen = Arc::new(Seen::default());
    let c = client(vec![dead_endpoint().await, serve(seen.clone()).await]);
    let head = c.head().await.expect("the second endpoint answers");
    assert_eq!(head.seqno, 38_093_956);
    // The endpoint that answered is tried first from now on.
    c.head().await.expect("again");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);

    let none = client(vec![dead_endpoint().await]);
    match none.head().await {
        Err(ChainError::Unreachable { .. }) => {}
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[test]
fn bad_endpoints_are_refused_with_the_reason() {
    for bad in ["", "ftp://x/api/v2", "not a url"] {
        let err = Toncenter::new(ToncenterConfig::single(bad)).expect_err(bad);
        assert!(err.to_string().contains("chain endpoint"), "{err}");
    }
    assert!(Toncenter::new(ToncenterConfig {
        endpoints: vec![],
        ..ToncenterConfig::single("x")
    })
    .is_err());
}
