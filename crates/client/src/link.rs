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

/// Learns the proxy's voucher key and prices from its hello.
fn on_hello(shared: &Shared, hello: &cocoon_proto::ProxyHello) {
    shared.payments.on_hello(&shared.address, hello);
    let tariff = crate::admission::Tariff::from_hello(hello);
    if let Some(p) = tariff.prices() {
        shared.history.prices_seen(
            cocoon_core::unix_now(),
            p.list.price_per_token.get(),
            p.list.worker_fee_per_token.get(),
        );
    }
    *shared.prices.lock().unwrap_or_else(|p| p.into_inner()) = tariff;
}

pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff =
        cocoon_transport::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    // Only changes of the link are logged (up, lost, back), never the
    // routine checks: an idle client's log stays still.
    let mut link = cocoon_transport::LinkLog::new();
    // The development deposit is looked at once per connection, not per check.
    let mut deposit_checked = false;
    loop {
        let mut proxy = shared.proxy.clone();
        let hello = ClientHello {
            protocol_version: cocoon_core::PROTOCOL_VERSION,
            client_name: shared.config.name.clone(),
        };
        let delay = match tokio::time::timeout(Duration::from_secs(10), proxy.hello(hello)).await {
            Ok(Ok(resp)) => {
                let hello = resp.into_inner();
                on_hello(&shared, &hello);
                if hello.payments && !deposit_checked {
                    deposit_checked = dev_deposit(&shared).await;
                }
                shared.introduced.send_replace(true);
                let name = hello.proxy_name;
                shared.proxy_up.store(true, Ordering::Relaxed);
                let addr = &shared.config.proxy;
                let client = &shared.config.name;
                match link.up() {
                    cocoon_transport::LinkUp::Connected { .. } => {
                        tracing::info!(%client, proxy = %name, %addr, "connected to proxy")
                    }
                    cocoon_transport::LinkUp::Reconnected { outage, failures } => tracing::info!(
                        %client,
                        proxy = %name,
                        %addr,
                        outage = ?Duration::from_secs(outage.as_secs().max(1)),
                        failed_attempts = failures,
                        "reconnected to proxy"
                    ),
                    cocoon_transport::LinkUp::StillUp => {
                        tracing::trace!(proxy = %name, "proxy link check passed")
                    }
                }
                *shared.proxy_name.lock().unwrap_or_else(|p| p.into_inner()) = name;
                backoff.reset();
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
                deposit_checked = false;
                let addr = &shared.config.proxy;
                let client = &shared.config.name;
                let change = link.down();
                if refused {
                    // Reachable but incompatible: retrying will not help until
                    // one side is upgraded, so say so every time.
                    tracing::error!(%client, %addr, error = %why, "the proxy refused this client");
                } else if change == cocoon_transport::LinkDown::Lost {
                    tracing::warn!(%client, %addr, error = %why, "lost the connection to the proxy; reconnecting with backoff");
                } else if change.is_news() {
                    tracing::warn!(%client, %addr, error = %why, "proxy not reachable; retrying with backoff");
                } else {
                    tracing::debug!(%addr, error = %why, retry_in = ?delay, "proxy not reachable");
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
/// Returns whether the question is settled (credited, not needed, or
/// refused); `false` when the proxy could not be asked, to ask again.
async fn dev_deposit(shared: &Shared) -> bool {
    let Some(amount) = shared.config.dev_deposit else {
        return true;
    };
    let mut proxy = shared.proxy.clone();
    let address = shared.address.to_string();
    let balance = proxy
        .balance(cocoon_proto::BalanceRequest {
            client_address: address.clone(),
        })
        .await;
    match &balance {
        Ok(b) if b.get_ref().deposited == 0 => {}
        Ok(_) => return true,
        Err(status) => {
            tracing::debug!(error = %status.message(), "cannot read the balance; will ask again");
            return false;
        }
    }
    match proxy
        .dev_deposit(cocoon_proto::DevDepositRequest {
            client_address: address.clone(),
            amount_nanoton: amount.get(),
        })
        .await
    {
        Ok(_) => tracing::info!(%address, %amount, "development deposit credited"),
        // Lost on the way (the proxy went down meanwhile): ask again on
        // the next connection.
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ) =>
        {
            tracing::debug!(error = %status.message(), "the development deposit did not reach the proxy; will ask again");
            return false;
        }
        Err(status) => {
            tracing::warn!(%address, error = %status.message(), "development deposit refused")
        }
    }
    true
}
