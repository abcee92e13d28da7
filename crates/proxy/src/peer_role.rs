//! One listener serves clients and workers; each service checks that the
//! peer's attested role is the one it serves.

use std::sync::Arc;

use cocoon_core::Role;
use cocoon_tee::{Attested, PeerAttestation};
use cocoon_transport::PeerInfo;
use tonic::Status;

/// The peer's attestation if it proved `role`; an error if it proved
/// another. Without attestation (the insecure development policy) there is
/// no role to check and `None` is returned.
pub(crate) fn require(
    info: Option<&PeerInfo>,
    role: Role,
) -> Result<Option<Arc<Attested<PeerAttestation>>>, Status> {
    let Some(att) = info.and_then(|i| i.identity.attestation.clone()) else {
        return Ok(None);
    };
    if att.role != role {
        return Err(Status::permission_denied(format!(
            "this service is for {role}s; the peer's attested certificate says it is a {}",
            att.role
        )));
    }
    Ok(Some(att))
}
