//! `cocoon devnet`, and the devnet `cocoon up` runs in its own process.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use cocoon_devnet::{api, Devnet, DevnetOptions, Faults};

use crate::options;

/// The default address of the devnet's API.
pub const DEFAULT_LISTEN: &str = api::DEFAULT_LISTEN;

/// A devnet serving its API in the background of this process.
pub struct RunningDevnet {
    /// The devnet itself.
    pub devnet: Arc<Devnet>,
    /// Where its API listens.
    pub listen: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningDevnet {
    /// The API base nodes point `--chain` at.
    pub fn endpoint(&self) -> String {
        format!("http://{}/api/v2", self.listen)
    }

    /// Stops the API; the state is already on disk.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// How a devnet behaves: its blocks and the faults it injects.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Block interval in milliseconds.
    pub block_interval_ms: Option<u64>,
    /// Fraction of accepted externals dropped.
    pub drop_externals: Option<f64>,
    /// Calls per second before 429.
    pub rate_limit: Option<f64>,
    /// Extra blocks every message waits.
    pub delay_blocks: Option<u32>,
}

impl Behaviour {
    fn faults(&self) -> Faults {
        Faults {
            drop_externals: self.drop_externals.unwrap_or(0.0),
            delay_blocks: self.delay_blocks.unwrap_or(0),
        }
    }

    fn api(&self) -> api::ApiOptions {
        api::ApiOptions {
            block_interval: self
                .block_interval_ms
                .map(std::time::Duration::from_millis)
                .unwrap_or(api::DEFAULT_BLOCK_INTERVAL),
            rate_limit: self.rate_limit,
        }
    }

    /// One line for the start-up banner and the logs.
    pub fn describe(&self) -> String {
        let f = self.faults();
        let mut s = format!(
            "a block every {:?} while messages wait",
            self.api().block_interval
        );
        if f.drop_externals > 0.0 {
            s.push_str(&format!(
                "; drops {:.0}% of accepted externals",
                f.drop_externals * 100.0
            ));
        }
        if f.delay_blocks > 0 {
            s.push_str(&format!("; delays every message {} blocks", f.delay_blocks));
        }
        if let Some(r) = self.rate_limit {
            s.push_str(&format!("; answers {r} calls/s, then 429"));
        }
        s
    }
}

/// Opens the devnet in `dir` and serves its API on `listen`.
pub async fn start(
    dir: &Path,
    listen: SocketAddr,
    dev: bool,
    behaviour: Behaviour,
) -> anyhow::Result<RunningDevnet> {
    let d = dir.to_path_buf();
    let faults = behaviour.faults();
    let devnet = tokio::task::spawn_blocking(move || {
        Devnet::open(
            &d,
            DevnetOptions {
                dev,
                frozen_clock: None,
                faults,
            },
        )
    })
    .await?
    .with_context(|| format!("opening the devnet in {}", dir.display()))?;
    let devnet = Arc::new(devnet);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("the devnet's API cannot listen on {listen}"))?;
    let listen = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(
        listener,
        devnet.clone(),
        behaviour.api(),
        async move {
            let _ = stopped.await;
        },
    ));
    tracing::info!(%listen, behaviour = %behaviour.describe(), "devnet started");
    if dev {
        tracing::warn!(
            %listen,
            "devnet development tools are ON: the faucet mints TON and the clock can be moved; never point a production node at this devnet"
        );
    }
    Ok(RunningDevnet {
        devnet,
        listen,
        stop,
        task,
    })
}

/// `cocoon devnet`: serve until Ctrl-C.
pub async fn run(o: options::DevnetOptions) -> anyhow::Result<()> {
    let data_dir = o.data_dir.unwrap_or_else(crate::trust::default_data_dir);
    let listen = o
        .devnet_listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default"));
    let dev = o.dev.unwrap_or(false);
    let behaviour = Behaviour {
        block_interval_ms: o.block_interval_ms,
        drop_externals: o.drop_externals,
        rate_limit: o.rate_limit,
        delay_blocks: o.delay_blocks,
    };
    let running = start(&data_dir.join("devnet"), listen, dev, behaviour).await?;
    let c = running.devnet.counters();
    eprintln!(
        "\ncocoon devnet: TON devnet running.\n\
         \n  API        {endpoint}  (toncenter v2 subset)\n  \
         state      {dir}  ({blocks} blocks so far)\n  \
         global id  {gid}\n  \
         blocks     {blocks_desc}\n  \
         tools      {tools}\n\
         \nPress Ctrl-C to stop.\n",
        endpoint = running.endpoint(),
        dir = data_dir.join("devnet").display(),
        blocks = c.blocks,
        gid = running.devnet.global_id(),
        blocks_desc = behaviour.describe(),
        tools = if dev {
            "faucet and clock ON (--dev): DEVELOPMENT ONLY"
        } else {
            "faucet and clock off (start with --dev to enable them)"
        },
    );
    crate::run::ctrl_c().await;
    running.shutdown().await;
    Ok(())
}
