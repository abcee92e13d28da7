//! The blockchain configuration the devnet charges by: byte for byte the one
//! `@ton/sandbox` runs with (`contracts/build/ton_config.boc`, which
//! `contracts/scripts/build.mjs --check` keeps equal to the sandbox's), with
//! the two changes tycho's parser needs. Neither touches a fee or a limit a
//! contract of ours can observe:
//!
//! - param 12 (workchains) is in TON's newer layout, which tycho-types
//!   cannot read: it is replaced by one basic workchain 0;
//! - param 43 (size limits) is absent: it is set to tycho's defaults,
//!   which are TON's;
//!
//! and one of its own: param 19 (the global id) is the devnet's,
//! [`DEVNET_GLOBAL_ID`], so a message signed for the devnet is valid
//! neither on mainnet (-239) nor on testnet (-3). Only the `GLOBALID`
//! instruction reads it; no fee depends on it.

use tycho_executor::ParsedConfig;
use tycho_types::boc::Boc;
use tycho_types::cell::{Cell, HashBytes};
use tycho_types::dict::Dict;
use tycho_types::models::{
    BlockchainConfig, BlockchainConfigParams, WorkchainDescription, WorkchainFormat,
    WorkchainFormatBasic,
};

/// The devnet's global id: "coco" in ASCII.
pub const DEVNET_GLOBAL_ID: i32 = 0x636f_636f;

/// The embedded configuration's bag of cells.
pub const CONFIG_BOC: &[u8] = include_bytes!("../../../contracts/build/ton_config.boc");

/// The configuration could not be made usable.
#[derive(Debug, thiserror::Error)]
#[error("the devnet's blockchain configuration ({what}): {reason}")]
pub struct ConfigError {
    what: &'static str,
    reason: String,
}

fn err(what: &'static str) -> impl FnOnce(tycho_types::error::Error) -> ConfigError {
    move |e| ConfigError {
        what,
        reason: e.to_string(),
    }
}

/// The configuration as the executor and the get-method VM take it.
pub struct NetworkConfig {
    raw: BlockchainConfig,
}

impl NetworkConfig {
    /// The embedded configuration with the two changes above.
    pub fn embedded() -> Result<Self, ConfigError> {
        // The file is the parameters' dictionary alone, as TON's
        // `ConfigParams` stores it; the config contract's address is TON's.
        let root = Boc::decode(CONFIG_BOC).map_err(|e| ConfigError {
            what: "decoding contracts/build/ton_config.boc",
            reason: e.to_string(),
        })?;
        let mut raw = BlockchainConfig {
            address: HashBytes([0x55; 32]),
            params: BlockchainConfigParams::from_raw(root),
        };
        let mut workchains = Dict::<i32, WorkchainDescription>::new();
        workchains
            .set(0, basechain())
            .map_err(err("building the workchain description"))?;
        raw.params
            .set_workchains(&workchains)
            .map_err(err("setting param 12"))?;
        raw.params
            .set_size_limits(&ParsedConfig::DEFAULT_SIZE_LIMITS_CONFIG)
            .map_err(err("setting param 43"))?;
        raw.params
            .set_global_id(DEVNET_GLOBAL_ID)
            .map_err(err("setting param 19"))?;
        Ok(NetworkConfig { raw })
    }

    /// The configuration parsed for a block at `now` (storage prices
    /// depend on the time).
    pub fn parse_at(&self, now: u32) -> Result<ParsedConfig, ConfigError> {
        ParsedConfig::parse(self.raw.clone(), now).map_err(err("parsing"))
    }

    /// The network's global id (param 19): what wallets bind their ids to.
    pub fn global_id(&self) -> Result<i32, ConfigError> {
        self.raw
            .params
            .get_global_id()
            .map_err(err("reading param 19"))
    }

    /// Parameter `index`'s cell, `None` when absent.
    pub fn param(&self, index: u32) -> Option<Cell> {
        self.raw.params.as_dict().get(index).ok().flatten()
    }

    /// The raw parameters (for the get-method VM's c7).
    pub fn params(&self) -> &tycho_types::models::BlockchainConfigParams {
        &self.raw.params
    }
}

fn basechain() -> WorkchainDescription {
    WorkchainDescription {
        enabled_since: 0,
        actual_min_split: 0,
        min_split: 0,
        max_split: 0,
        active: true,
        accept_msgs: true,
        zerostate_root_hash: HashBytes::ZERO,
        zerostate_file_hash: HashBytes::ZERO,
        version: 0,
        format: WorkchainFormat::Basic(WorkchainFormatBasic {
            vm_version: 0,
            vm_mode: 0,
        }),
    }
}
