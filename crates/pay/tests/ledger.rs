//! The ledger: balances move exactly, refusals move nothing, a reopened
//! ledger has every account as it was, requests a crash left in flight are
//! settled at their recorded progress, and group commit batches concurrent
//! operations; checks are paid from the commission, never beyond it.

use std::path::PathBuf;
use std::sync::Arc;

use cocoon_core::{Charge, Nanoton};
use cocoon_pay::{
    Ledger, LedgerError, Op, Outcome, VoucherBook, VoucherKind, VoucherSigner, VoucherTerms,
};
use ring::signature::Ed25519KeyPair;
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

fn addr(b: u8) -> StdAddr {
    StdAddr::new(0, HashBytes([b; 32]))
}

fn n(v: u64) -> Nanoton {
    Nanoton::new(v)
}

struct Fixture {
    dir: PathBuf,
    key: Vec<u8>,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cocoon-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .unwrap()
            .as_ref()
            .to_vec();
        Fixture { dir, key }
    }

    fn open(&self) -> (Ledger, cocoon_pay::Recovery) {
        Ledger::open(
            &self.dir.join("ledger.redb"),
            VoucherSigner::from_pkcs8(&self.key).unwrap(),
            VoucherTerms {
                contract: addr(0xcc),
                ttl_secs: 86_400,
            },
        )
        .unwrap()
    }

    fn public_key(&self) -> [u8; 32] {
        VoucherSigner::from_pkcs8(&self.key).unwrap().public_key()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn reserve(id: &str, amount: u64) -> Op {
    Op::Reserve {
        request: id.into(),
        client: addr(1),
        worker: addr(2),
        amount: n(amount),
    }
}

fn settle(id: &str, client: u64, worker: u64) -> Op {
    Op::Settle {
        request: id.into(),
        charge: Charge {
            client: n(client),
            worker: n(worker),
        },
    }
}

#[test]
fn balances_move_exactly_and_refusals_move_nothing() {
    let f = Fixture::new("flows");
    let (l, _) = f.open();
    l.submit_blocking(Op::Deposit {
        client: addr(1),
        amount: n(1000),
    })
    .unwrap();
    l.submit_blocking(reserve("a", 600)).unwrap();
    let before = l.client(&addr(1));
    let err = l.submit_blocking(reserve("b", 401)).unwrap_err();
    assert!(
        err.to_string().contains("available is 400 nanoton"),
        "{err}"
    );
    assert_eq!(l.client(&addr(1)), before);
    assert!(matches!(
        l.submit_blocking(reserve("a", 1)),
        Err(LedgerError::DuplicateRequest(_))
    ));

    let Outcome::Settled(s) = l.submit_blocking(settle("a", 250, 200)).unwrap() else {
        panic!("not settled")
    };
    assert_eq!((s.charged.client, s.charged.worker), (n(250), n(200)));
    let c = l.client(&addr(1));
    assert_eq!(
        (c.charged, c.reserved, c.available()),
        (n(250), n(0), n(750))
    );
    assert_eq!(l.worker(&addr(2)).earned, n(200));
    assert_eq!(l.totals().commission, n(50));

    // The vouchers state the new totals and pass a party's checks.
    let mut client_book =
        VoucherBook::new(VoucherKind::Client, addr(0xcc), addr(1), f.public_key());
    client_book
        .accept(s.client_voucher.clone().unwrap(), 0)
        .unwrap();
    assert_eq!(s.client_voucher.as_ref().unwrap().voucher.total, n(250));
    let mut worker_book =
        VoucherBook::new(VoucherKind::Worker, addr(0xcc), addr(2), f.public_key());
    worker_book
        .accept(s.worker_voucher.clone().unwrap(), 0)
        .unwrap();

    // Released before the first byte: nothing charged.
    l.submit_blocking(reserve("c", 100)).unwrap();
    l.submit_blocking(Op::Release {
        request: "c".into(),
    })
    .unwrap();
    assert_eq!(l.client(&addr(1)).available(), n(750));
    // Settled twice or never reserved: refused, nothing moves.
    let totals = l.totals();
    for op in [
        settle("a", 1, 1),
        settle("zz", 1, 1),
        Op::Release {
            request: "c".into(),
        },
    ] {
        assert!(matches!(
            l.submit_blocking(op),
            Err(LedgerError::UnknownRequest(_))
        ));
    }
    assert_eq!(l.totals(), totals);
    // A charge above the reservation is capped at it.
    l.submit_blocking(reserve("d", 10)).unwrap();
    let Outcome::Settled(s) = l.submit_blocking(settle("d", 50, 40)).unwrap() else {
        panic!()
    };
    assert_eq!((s.charged.client, s.charged.worker), (n(10), n(10)));
    client_book
        .accept(s.client_voucher.clone().unwrap(), 0)
        .unwrap();
    assert_eq!(client_book.latest().unwrap().voucher.total, n(260));
}

#[test]
fn checks_are_paid_from_the_commission_and_what_it_lacks_stays_due() {
    let f = Fixture::new("checks");
    let checker = addr(3);
    let paid = |outcome: Outcome| match outcome {
        Outcome::Settled(s) => *s,
        other => panic!("not settled: {other:?}"),
    };
    let pay = |fee: u64| Op::PayCheck {
        worker: checker.clone(),
        fee: n(fee),
    };
    let mut book = VoucherBook::new(
        VoucherKind::Worker,
        addr(0xcc),
        checker.clone(),
        f.public_key(),
    );
    {
        let (l, _) = f.open();
        l.submit_blocking(Op::Deposit {
            client: addr(1),
            amount: n(1000),
        })
        .unwrap();
        l.submit_blocking(reserve("a", 500)).unwrap();
        l.submit_blocking(settle("a", 400, 300)).unwrap();
        assert_eq!(l.totals().commission, n(100));
        let client = l.client(&addr(1));

        // Covered: paid at once, with a voucher; no client moves.
        let s = paid(l.submit_blocking(pay(70)).unwrap());
        assert_eq!((s.charged.client, s.charged.worker), (n(0), n(70)));
        assert!(s.client_voucher.is_none(), "no client pays for a check");
        book.accept(s.worker_voucher.unwrap(), 0).unwrap();
        assert_eq!(book.latest().unwrap().voucher.total, n(70));
        assert_eq!(l.client(&addr(1)), client);

        // Beyond the commission: what it holds is paid, the rest is due.
        let s = paid(l.submit_blocking(pay(50)).unwrap());
        assert_eq!(s.charged.worker, n(30));
        book.accept(s.worker_voucher.unwrap(), 0).unwrap();
        let w = l.worker(&checker);
        assert_eq!((w.earned, w.checks_due), (n(100), n(20)));
        let t = l.totals();
        assert_eq!((t.commission, t.earned), (n(0), n(400)));
        assert_eq!(t.charged.get(), t.earned.get() + t.commission.get());

        // Nothing left: all of it is due, and no voucher is signed.
        let s = paid(l.submit_blocking(pay(5)).unwrap());
        assert_eq!(s.charged.worker, n(0));
        assert!(s.worker_voucher.is_none());
        assert_eq!(l.worker(&checker).checks_due, n(25));
    }
    // What is due survives a restart, and the checker's next request pays
    // it from the commission that request brings.
    let (l, _) = f.open();
    assert_eq!(l.worker(&checker).checks_due, n(25));
    l.submit_blocking(Op::Reserve {
        request: "b".into(),
        client: addr(1),
        worker: checker.clone(),
        amount: n(100),
    })
    .unwrap();
    let s = paid(l.submit_blocking(settle("b", 100, 60)).unwrap());
    assert_eq!(s.charged.worker, n(60), "the request's own fee");
    book.accept(s.worker_voucher.unwrap(), 0).unwrap();
    assert_eq!(
        book.latest().unwrap().voucher.total,
        n(100 + 60 + 25),
        "the voucher also pays what was due"
    );
    let w = l.worker(&checker);
    assert_eq!((w.earned, w.checks_due), (n(185), n(0)));
    let t = l.totals();
    assert_eq!(t.commission, n(40 - 25));
    assert_eq!(t.charged.get(), t.earned.get() + t.commission.get());
}

#[test]
fn a_reopened_ledger_has_every_account_and_settles_what_a_crash_left_in_flight() {
    let f = Fixture::new("reopen");
    let (totals, client, worker) = {
        let (l, rec) = f.open();
        assert_eq!(rec, Default::default());
        l.submit_blocking(Op::Deposit {
            client: addr(1),
            amount: n(1000),
        })
        .unwrap();
        l.submit_blocking(reserve("done", 100)).unwrap();
        l.submit_blocking(settle("done", 80, 60)).unwrap();
        // Left in flight: one with progress recorded, one without.
        l.submit_blocking(reserve("partial", 300)).unwrap();
        l.submit_blocking(Op::Progress {
            request: "partial".into(),
            charge: Charge {
                client: n(120),
                worker: n(90),
            },
        })
        .unwrap();
        l.submit_blocking(reserve("silent", 200)).unwrap();
        (l.totals(), l.client(&addr(1)), l.worker(&addr(2)))
    };
    assert_eq!(totals.in_flight, 2);
    assert_eq!(client.reserved, n(500));

    let (l, rec) = f.open();
    assert_eq!((rec.settled, rec.released, rec.charged), (1, 1, n(120)));
    let c = l.client(&addr(1));
    assert_eq!(
        (c.deposited, c.charged, c.reserved),
        (n(1000), n(200), n(0))
    );
    assert_eq!(c.seqno, client.seqno + 1);
    let w = l.worker(&addr(2));
    assert_eq!((w.earned, w.seqno), (n(150), worker.seqno + 1));
    let t = l.totals();
    assert_eq!((t.in_flight, t.commission), (0, n(50)));
    assert_eq!(t.charged.get(), t.earned.get() + t.commission.get());
    drop(l);
    // Opening again changes nothing.
    let (l, rec) = f.open();
    assert_eq!(rec, Default::default());
    assert_eq!(l.totals(), t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_commits_and_keep_the_books_balanced() {
    let f = Fixture::new("group");
    let (l, _) = f.open();
    let l = Arc::new(l);
    for c in 0..10u8 {
        l.submit(Op::Deposit {
            client: addr(100 + c),
            amount: n(1_000_000),
        })
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for t in 0..50u32 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let mut vouchers = 0u64;
            for i in 0..20u32 {
                let id = format!("r{t}-{i}");
                let client = addr(100 + (t % 10) as u8);
                l.submit(Op::Reserve {
                    request: id.clone(),
                    client,
                    worker: addr(200 + (i % 3) as u8),
                    amount: n(1000),
                })
                .await
                .unwrap();
                let cost = u64::from(t * 7 + i) % 1000;
                let settled = l
                    .submit(Op::Settle {
                        request: id,
                        charge: Charge {
                            client: n(cost),
                            worker: n(cost * 3 / 4),
                        },
                    })
                    .await
                    .unwrap();
                let Outcome::Settled(s) = settled else {
                    panic!("not settled")
                };
                vouchers += u64::from(s.client_voucher.is_some());
            }
            vouchers
        }));
    }
    let mut vouchers = 0;
    for t in tasks {
        vouchers += t.await.unwrap();
    }
    // One client voucher per client per commit, not one per settlement.
    assert!(
        vouchers > 0 && vouchers < 1000,
        "{vouchers} client vouchers for 1000 settlements"
    );
    let t = l.totals();
    assert_eq!(t.in_flight, 0);
    assert_eq!(t.reserved, n(0));
    assert_eq!(t.charged.get(), t.earned.get() + t.commission.get());
    let (commits, ops) = l.commit_stats();
    assert_eq!(ops, 10 + 2000);
    assert!(
        commits < ops,
        "group commit never grouped: {commits} commits for {ops} ops"
    );
}
