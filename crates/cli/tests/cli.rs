//! The `cocoon` binary's command line: help texts and configuration errors.
//! (Also makes `cargo test` build the binary the end-to-end suite runs.)

use std::process::Command;

fn cocoon(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(args)
        .env_remove("COCOON_PEER_POLICY")
        .env_remove("COCOON_CONFIG")
        .output()
        .expect("run cocoon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_explains_every_command_and_option() {
    let (code, out, _) = cocoon(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["up", "client", "proxy", "worker"] {
        assert!(out.contains(cmd), "help lists {cmd}:\n{out}");
    }
    let (code, out, _) = cocoon(&["worker", "--help"]);
    assert_eq!(code, 0);
    for opt in [
        "--proxy",
        "--model",
        "--upstream",
        "--coefficient",
        "--max-active-requests",
        "--peer-policy",
        "COCOON_WORKER_PROXY",
    ] {
        assert!(out.contains(opt), "worker help mentions {opt}:\n{out}");
    }
}

#[test]
fn a_missing_peer_policy_is_an_explicit_error() {
    let (code, _, err) = cocoon(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--dev --peer-policy none"), "{err}");
    let (code, _, err) = cocoon(&["proxy", "--peer-policy", "tdx", "--listen", "127.0.0.1:0"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot read policy file tdx"), "{err}");
}

/// Development-only trust is refused unless --dev says this is development.
#[test]
fn production_mode_refuses_the_sim_tee_and_the_none_policy() {
    let dir = std::env::temp_dir().join(format!("cocoon-cli-dev-{}", std::process::id()));
    let policy = dir.join("policy.toml");
    let (code, _, err) = cocoon(&[
        "attest",
        "dev-policy",
        "--data-dir",
        dir.to_str().unwrap(),
        "--out",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let base = [
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ];
    let (code, _, err) = cocoon(
        &[
            &base[..],
            &["--peer-policy", policy.to_str().unwrap(), "--tee", "sim"],
        ]
        .concat(),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("accepts sim evidence") && err.contains("--dev"),
        "{err}"
    );
    let (code, _, err) = cocoon(&[&base[..], &["--peer-policy", "none"]].concat());
    assert_ne!(code, 0);
    assert!(err.contains("refused outside development mode"), "{err}");
    let (code, _, err) =
        cocoon(&[&base[..], &["--dev-deposits", "--peer-policy", "none"]].concat());
    assert_ne!(code, 0);
    assert!(err.contains("refused outside development mode"), "{err}");
    // A production policy (TDX only) with a sim attester is refused too.
    let tdx_only = dir.join("tdx.toml");
    std::fs::write(
        &tdx_only,
        format!(
            "kinds = [\"tdx\"]\n[images]\nclient = [\"{}\"]\n",
            "00".repeat(32)
        ),
    )
    .unwrap();
    let (code, _, err) = cocoon(
        &[
            &base[..],
            &["--peer-policy", tdx_only.to_str().unwrap(), "--tee", "sim"],
        ]
        .concat(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("--tee sim") && err.contains("--dev"), "{err}");
    // configfs-tsm that is not there is named.
    let (code, _, err) = cocoon(
        &[
            &base[..],
            &[
                "--peer-policy",
                tdx_only.to_str().unwrap(),
                "--tee",
                "tdx",
                "--tsm-root",
                dir.join("no-tsm").to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("configfs-tsm"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_values_name_the_option() {
    let (code, _, err) = cocoon(&["worker", "--coefficient", "0", "--proxy", "x:1"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("coefficient") && err.contains("found 0"),
        "{err}"
    );
    let (code, _, err) = cocoon(&[
        "worker",
        "--proxy",
        "127.0.0.1:1",
        "--model",
        "m",
        "--upstream",
        "ftp://x",
        "--dev",
        "--peer-policy",
        "none",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("ftp://x"), "{err}");
    let (code, _, err) = cocoon(&[
        "worker",
        "--dev",
        "--peer-policy",
        "none",
        "--upstream",
        "http://127.0.0.1:1/v1",
        "--proxy",
        "127.0.0.1:1",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--model is required"), "{err}");
}

#[test]
fn configuration_file_is_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("cocoon-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[proxy]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n").unwrap();
    let (code, _, err) = cocoon(&["--config", bad.to_str().unwrap(), "proxy"]);
    assert_ne!(code, 0);
    assert!(err.contains("lisen") && err.contains("bad.toml"), "{err}");
    let (code, _, err) = cocoon(&[
        "--config",
        dir.join("missing.toml").to_str().unwrap(),
        "proxy",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot read configuration file"), "{err}");
    // A valid file whose only gap is the policy reaches the policy check.
    let ok = dir.join("ok.toml");
    std::fs::write(
        &ok,
        "[proxy]\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (code, _, err) = cocoon(&["--config", ok.to_str().unwrap(), "proxy"]);
    assert_ne!(code, 0);
    assert!(err.contains("no peer policy is configured"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_taken_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = cocoon(&[
        "proxy",
        "--dev",
        "--peer-policy",
        "none",
        "--listen",
        &addr,
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

fn tdx_fixture(name: &str) -> String {
    format!(
        "{}/../../../shared/fixtures/tee/tdx/{name}",
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        )
        .display()
    )
}

#[test]
fn attest_verify_reports_what_a_tdx_quote_proves() {
    let (code, out, err) = cocoon(&[
        "attest",
        "verify",
        "--quote",
        &tdx_fixture("tdx_quote"),
        "--collateral",
        &tdx_fixture("tdx_quote_collateral.json"),
        "--at",
        "1752919234",
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "verified     TDX quote v4 (TD1.0)",
        "tcb status   UpToDate",
        "advisories   none",
        "rtmr3",
        "image hash",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    let (code, json, _) = cocoon(&[
        "attest",
        "verify",
        "--json",
        "--quote",
        &tdx_fixture("cocoon_quote.dat"),
        "--collateral",
        &tdx_fixture("tdx_quote_outdated_collateral.json"),
        "--at",
        "1774003274",
    ]);
    assert_eq!(code, 0);
    assert!(
        json.contains("\"tcb_status\": \"UpToDate\"") && json.contains("\"image_hash\""),
        "{json}"
    );
}

#[test]
fn attest_verify_fails_loudly() {
    let (code, out, err) = cocoon(&[
        "attest",
        "verify",
        "--quote",
        &tdx_fixture("tdx_quote"),
        "--collateral",
        &tdx_fixture("tdx_quote_collateral.json"),
        "--at",
        "1752919235",
    ]);
    assert_ne!(code, 0, "an expired collateral verified:\n{out}");
    assert!(
        err.contains("TDX quote verification failed at 1752919235"),
        "{err}"
    );
    assert!(!out.contains("verified"), "{out}");
    let (code, _, err) = cocoon(&[
        "attest",
        "verify",
        "--quote",
        &tdx_fixture("tdx_quote_outdated"),
        "--collateral",
        &tdx_fixture("tdx_quote_outdated_collateral.json"),
        "--at",
        "1774003274",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("No matching TCB level"), "{err}");
}

#[test]
fn attest_verify_reads_hex_quotes() {
    let raw = std::fs::read(tdx_fixture("tdx_quote")).unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!("cocoon-quote-{}.hex", std::process::id()));
    std::fs::write(&path, format!("{hex}\n")).unwrap();
    let (code, out, err) = cocoon(&[
        "attest",
        "verify",
        "--quote",
        path.to_str().unwrap(),
        "--collateral",
        &tdx_fixture("tdx_quote_collateral.json"),
        "--at",
        "1752919234",
    ]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        code, 0,
        "the hex form of a good quote did not verify: {err}"
    );
    assert!(out.contains("tcb status   UpToDate"), "{out}");
}

fn snp_fixture(name: &str) -> String {
    format!(
        "{}/../../../shared/fixtures/tee/sev-snp/{name}",
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        )
        .display()
    )
}

#[test]
fn attest_verify_reports_what_an_snp_report_proves() {
    let (code, out, err) = cocoon(&[
        "attest",
        "verify",
        "--snp-report",
        &snp_fixture("report_milan.hex"),
        "--vcek",
        &snp_fixture("vcek_milan.der"),
        "--chain",
        &snp_fixture("cert_chain_milan.pem"),
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "signed by its VCEK",
        "measurement",
        "host data",
        "image hash",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    // The VLEK expired on 2025-12-10: fine at a time inside its validity,
    // refused now.
    let vlek = [
        "attest",
        "verify",
        "--snp-report",
        &snp_fixture("trustee_test-vlek-report.bin"),
        "--vlek",
        &snp_fixture("trustee_test-vlek.der"),
        "--chain",
        &snp_fixture("trustee_milan_ask_ark_asvk.pem"),
    ];
    let (code, out, err) = cocoon(&[&vlek[..], &["--at", "1748736000"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("signed by its VLEK"), "{out}");
    let (code, _, err) = cocoon(&vlek);
    assert_ne!(code, 0);
    assert!(
        err.contains("certificate SEV-VLEK is not valid at"),
        "{err}"
    );
}

#[test]
fn attest_verify_checks_an_ra_tls_certificate_and_a_policy() {
    use cocoon_tee::{sim::SimRoot, Claims, SimAttester};
    let dir = std::env::temp_dir().join(format!("cocoon-cli-cert-{}", std::process::id()));
    let attester = SimAttester::new(SimRoot::load_or_create(&dir).unwrap(), [4; 48]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims {
        public_key: [0; 32],
        role: cocoon_core::Role::Proxy,
        issued_at: now,
        expires_at: now + 600,
        config_hash: [1; 32],
        model_hash: None,
        receipt_key: None,
        e2e_key: None,
        region: None,
    };
    let minted = cocoon_tee::cert::mint(claims, &attester).unwrap();
    let cert = dir.join("proxy.der");
    std::fs::write(&cert, &minted.der).unwrap();
    let root = hex(&attester.root_public_key());
    let image = attester.image_hash().to_string();

    let (code, out, err) = cocoon(&[
        "attest",
        "verify",
        "--cert",
        cert.to_str().unwrap(),
        "--sim-root",
        &root,
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in ["kind         sim", "role         proxy", "binding", &image] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    // Without trusting the root, the sim evidence does not verify.
    let (code, _, err) = cocoon(&["attest", "verify", "--cert", cert.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("does not trust"), "{err}");
    // A TDX-only policy refuses it, naming the check.
    let policy = dir.join("tdx.toml");
    std::fs::write(
        &policy,
        format!("kinds = [\"tdx\"]\n[images]\nproxy = [\"{image}\"]\n"),
    )
    .unwrap();
    let (code, _, err) = cocoon(&[
        "attest",
        "verify",
        "--cert",
        cert.to_str().unwrap(),
        "--sim-root",
        &root,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("tee kind: sim is not accepted"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn gpu_fixture(name: &str) -> String {
    tdx_fixture(&format!("../nvidia/{name}"))
}

#[test]
fn attest_verify_checks_a_gpu_report_by_hand() {
    let report = gpu_fixture("hopperAttestationReport.txt");
    let chain = gpu_fixture("hopperCertChain.txt");
    let nonce = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
    let (code, out, err) = cocoon(&[
        "attest",
        "verify",
        "--gpu-report",
        &report,
        "--gpu-chain",
        &chain,
        "--nonce",
        nonce,
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "NVIDIA hopper GPU report",
        "gpu          hopper GH100 A01",
        "fwid         f5c384ae",
        "nonce check  verified",
        "msr64",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    // Another nonce, another GPU's chain, a chain without the signing
    // certificate: each exits non-zero and says why.
    for (args, says) in [
        (
            vec!["--gpu-chain", &chain, "--nonce", &"00".repeat(32)],
            "nonce",
        ),
        (
            vec![
                "--gpu-chain",
                &gpu_fixture("trustee_hopper_coco_certs1.txt"),
            ],
            "GPU",
        ),
        (
            vec![
                "--gpu-chain",
                &gpu_fixture("trustee_hopper_cert_chain_case4.txt"),
            ],
            "FWID",
        ),
    ] {
        let mut all = vec!["attest", "verify", "--gpu-report", &report];
        all.extend(args);
        let (code, out, err) = cocoon(&all);
        assert_ne!(code, 0, "{out}");
        assert!(err.contains(says), "{says}: {err}");
        assert!(!out.contains("verified"), "{out}");
    }
}
