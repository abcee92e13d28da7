//! `cocoon devnet`, and the devnet `cocoon up` runs in its own process.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use cocoon_devnet::{api, Devnet, DevnetOptions};

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

/// Opens the devnet in `dir` and serves its API on `listen`.
pub async fn start(dir: &Path, listen: SocketAddr, dev: bool) -> anyhow::Result<RunningDevnet> {
    let d = dir.to_path_buf();
    let devnet = tokio::task::spawn_blocking(move || {
        Devnet::open(
            &d,
            DevnetOptions {
                dev,
                frozen_clock: None,
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
    let task = tokio::spawn(api::serve(listener, devnet.clone(), async move {
        let _ = stopped.await;
    }));
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
    let running = start(&data_dir.join("devnet"), listen, dev).await?;
    let c = running.devnet.counters();
    eprintln!(
        "\ncocoon devnet: TON devnet running.\n\
         \n  API        {endpoint}  (toncenter v2 subset)\n  \
         state      {dir}  ({blocks} blocks so far)\n  \
         global id  {gid}\n  \
         tools      {tools}\n\
         \nPress Ctrl-C to stop.\n",
        endpoint = running.endpoint(),
        dir = data_dir.join("devnet").display(),
        blocks = c.blocks,
        gid = running.devnet.global_id(),
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
