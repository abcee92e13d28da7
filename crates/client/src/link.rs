//! Watches the connection to the proxy: checks the protocol version when
//! it comes up and keeps `/stats` truthful about whether it is up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cocoon_proto::ClientHello;
use tokio::sync::watch;

use crate::Shared;

/// How often a healthy link is checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff =
        cocoon_transport::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    // Whether the current outage has been reported (once per outage).
    let mut reported_down = false;
    loop {
        let mut proxy = shared.proxy.clone();
        let hello = ClientHello {
            protocol_version: cocoon_core::PROTOCOL_VERSION,
            client_name: shared.config.name.clone(),
        };
        let delay = match tokio::time::timeout(Duration::from_secs(10), proxy.hello(hello)).await {
            Ok(Ok(resp)) => {
                let hello = resp.into_inner();
                shared.payments.on_hello(&shared.address, &hello);
                if hello.payments {
                    dev_deposit(&shared).await;
                }
                shared.introduced.send_replace(true);
                let name = hello.proxy_name;
                if !shared.proxy_up.swap(true, Ordering::Relaxed) {
                    tracing::info!(proxy = %name, addr = %shared.config.proxy, "connected to proxy");
                }
                *shared.proxy_name.lock().unwrap_or_else(|p| p.into_inner()) = name;
                backoff.reset();
                reported_down = false;
                CHECK_EVERY
            }
            outcome => {
                let refused =
                    matches!(&outcome, Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition);
                let why = match outcome {
                    Ok(Err(status)) => status.message().to_string(),
                    _ => "no answer within 10 s".to_string(),
                };
                let delay = backoff.next_delay();
                shared.proxy_up.store(false, Ordering::Relaxed);
                if refused {
                    // Reachable but incompatible: retrying will not help until
                    // one side is upgraded, so say so every time.
                    tracing::error!(addr = %shared.config.proxy, error = %why, "the proxy refused this client");
                } else if !reported_down {
                    reported_down = true;
                    tracing::warn!(addr = %shared.config.proxy, error = %why, "proxy not reachable; retrying with backoff");
                } else {
                    tracing::debug!(addr = %shared.config.proxy, error = %why, retry_in = ?delay, "proxy not reachable");
                }
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Credits the development deposit once, when the account is empty.
async fn dev_deposit(shared: &Shared) {
    let Some(amount) = shared.config.dev_deposit else {
        return;
    };
    let mut proxy = shared.proxy.clone();
    let address = shared.address.to_string();
    let balance = proxy
        .balance(cocoon_proto::BalanceRequest {
            client_address: address.clone(),
        })
        .await;
    if !matches!(&balance, Ok(b) if b.get_ref().deposited == 0) {
        return;
    }
    match proxy
        .dev_deposit(cocoon_proto::DevDepositRequest {
            client_address: address.clone(),
            amount_nanoton: amount.get(),
        })
        .await
    {
        Ok(_) => tracing::info!(%address, %amount, "development deposit credited"),
        Err(status) => {
            tracing::warn!(%address, error = %status.message(), "development deposit refused")
        }
    }
}
