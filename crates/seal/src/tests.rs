use super::*;

fn binding() -> Binding<'static> {
    Binding {
        request_id: "req-1",
        model: "m",
        endpoint: "/v1/chat/completions",
        stream: true,
        max_tokens: 16,
        deterministic: false,
    }
}

#[test]
fn every_named_worker_opens_the_body_and_no_one_else() {
    let (a, b, c) = (
        WorkerKey::from_secret([1; 32]),
        WorkerKey::from_secret([2; 32]),
        WorkerKey::from_secret([3; 32]),
    );
    let (sealed, key) = seal(b"the prompt", &binding(), &[a.public(), b.public()]).unwrap();
    assert!(!sealed.ciphertext.windows(10).any(|w| w == b"the prompt"));
    for w in [&a, &b] {
        let wrapped = &sealed
            .keys
            .iter()
            .find(|(k, _)| *k == w.public())
            .unwrap()
            .1;
        let (body, k) = w
            .open(&sealed.ephemeral, wrapped, &sealed.ciphertext, &binding())
            .unwrap();
        assert_eq!(body, b"the prompt");
        assert_eq!(k, key);
    }
    // A worker it was not sealed for cannot use another's wrapped key.
    assert!(matches!(
        c.open(
            &sealed.ephemeral,
            &sealed.keys[0].1,
            &sealed.ciphertext,
            &binding()
        ),
        Err(SealError::Unwrap(_))
    ));
}

#[test]
fn changed_routing_facts_or_bytes_do_not_open() {
    let w = WorkerKey::from_secret([1; 32]);
    let (sealed, _) = seal(b"body", &binding(), &[w.public()]).unwrap();
    let wrapped = &sealed.keys[0].1;
    let changed = [
        Binding {
            max_tokens: 17,
            ..binding()
        },
        Binding {
            stream: false,
            ..binding()
        },
        Binding {
            model: "n",
            ..binding()
        },
        Binding {
            deterministic: true,
            ..binding()
        },
        Binding {
            endpoint: "/v1/completions",
            ..binding()
        },
    ];
    for b in changed {
        assert!(
            matches!(
                w.open(&sealed.ephemeral, wrapped, &sealed.ciphertext, &b),
                Err(SealError::Open(_))
            ),
            "{b:?}"
        );
    }
    // Another request id: the wrapped key itself is bound to it.
    let other = Binding {
        request_id: "req-2",
        ..binding()
    };
    assert!(w
        .open(&sealed.ephemeral, wrapped, &sealed.ciphertext, &other)
        .is_err());
    let mut flipped = sealed.ciphertext.clone();
    flipped[20] ^= 1;
    assert!(w
        .open(&sealed.ephemeral, wrapped, &flipped, &binding())
        .is_err());
}

#[test]
fn answer_chunks_are_bound_to_their_worker_index_and_request() {
    let (a, b) = (
        WorkerKey::from_secret([1; 32]),
        WorkerKey::from_secret([2; 32]),
    );
    let (_, key) = seal(b"x", &binding(), &[a.public(), b.public()]).unwrap();
    let c0 = key.seal_chunk(&a.public(), "req-1", 0, b"hello").unwrap();
    assert_eq!(
        key.open_chunk(&a.public(), "req-1", 0, &c0).unwrap(),
        b"hello"
    );
    assert!(
        key.open_chunk(&a.public(), "req-1", 1, &c0).is_err(),
        "reordered"
    );
    assert!(
        key.open_chunk(&b.public(), "req-1", 0, &c0).is_err(),
        "another worker's"
    );
    assert!(
        key.open_chunk(&a.public(), "req-2", 0, &c0).is_err(),
        "another request's"
    );
    // Two seals of the same chunk differ (random nonces).
    assert_ne!(
        c0,
        key.seal_chunk(&a.public(), "req-1", 0, b"hello").unwrap()
    );
}

#[test]
fn the_client_and_every_worker_derive_one_receipt_salt_per_request() {
    let (a, b) = (
        WorkerKey::from_secret([1; 32]),
        WorkerKey::from_secret([2; 32]),
    );
    let (sealed, key) = seal(b"x", &binding(), &[a.public(), b.public()]).unwrap();
    for (w, (_, wrapped)) in [&a, &b].into_iter().zip(&sealed.keys) {
        let (_, k) = w
            .open(&sealed.ephemeral, wrapped, &sealed.ciphertext, &binding())
            .unwrap();
        assert_eq!(k.receipt_salt(), key.receipt_salt());
    }
    let (_, other) = seal(b"x", &binding(), &[a.public()]).unwrap();
    assert_ne!(key.receipt_salt(), other.receipt_salt(), "one per request");
}

#[test]
fn low_order_keys_are_refused() {
    assert!(matches!(
        seal(b"x", &binding(), &[[0; 32]]),
        Err(SealError::Key(_))
    ));
}

#[test]
fn sealed_lengths_reveal_only_a_multiple_of_the_padding() {
    let w = WorkerKey::from_secret([1; 32]);
    let (_, key) = seal(b"x", &binding(), &[w.public()]).unwrap();
    let lens: Vec<usize> = ["a", "bb", "a longer token", &"z".repeat(200)]
        .iter()
        .map(|t| {
            key.seal_chunk(&w.public(), "req-1", 0, t.as_bytes())
                .unwrap()
                .len()
        })
        .collect();
    assert!(lens.iter().all(|l| *l == lens[0]), "{lens:?}");
    let long = key.seal_chunk(&w.public(), "req-1", 0, &[7; 300]).unwrap();
    assert_eq!(long.len(), lens[0] + PADDING);
    assert_eq!(
        key.open_chunk(&w.public(), "req-1", 0, &long).unwrap(),
        vec![7; 300]
    );
    let (small, _) = seal(b"hi", &binding(), &[w.public()]).unwrap();
    let (large, _) = seal(&[b'x'; 200], &binding(), &[w.public()]).unwrap();
    assert_eq!(small.ciphertext.len(), large.ciphertext.len());
}

#[test]
fn one_sender_seals_many_requests_each_under_its_own_key() {
    let w = WorkerKey::from_secret([1; 32]);
    let sender = Sender::generate().unwrap();
    let (a, ka) = seal_from(&sender, b"first", &binding(), &[w.public()]).unwrap();
    let (b, kb) = seal_from(&sender, b"second", &binding(), &[w.public()]).unwrap();
    assert_eq!(a.ephemeral, b.ephemeral, "one ephemeral key for the window");
    assert_ne!(ka, kb, "a request key per request");
    assert_ne!(a.keys[0].1, b.keys[0].1);
    for (sealed, body) in [(&a, &b"first"[..]), (&b, &b"second"[..])] {
        let (opened, _) = w
            .open(
                &sealed.ephemeral,
                &sealed.keys[0].1,
                &sealed.ciphertext,
                &binding(),
            )
            .unwrap();
        assert_eq!(opened, body);
    }
    // Another request's wrapped key does not open this one's body.
    assert!(w
        .open(&a.ephemeral, &b.keys[0].1, &a.ciphertext, &binding())
        .is_err());
}
