//! The receipt itself, its canonical encoding and its signature.

use cocoon_core::PriceList;
use serde::{Deserialize, Serialize};

use crate::batch::{BatchProof, MAX_BATCH};
use crate::check::ReceiptError;

/// The receipt format this code writes. Version 4 is signed with the
/// worker's receipt key (named in its certificate's claims and registered
/// in its worker contract) and its facts state the time; version 3, signed
/// with the certificate's own key, and version 2, the same without
/// `batch`, are still read.
pub const RECEIPT_VERSION: u32 = 4;

/// Token counts, as the engine reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptUsage {
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u64,
    /// Completion tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// Completion tokens spent on reasoning.
    pub reasoning_tokens: u64,
}

impl std::fmt::Display for ReceiptUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prompt {} ({} cached), completion {} ({} reasoning)",
            self.prompt_tokens, self.cached_tokens, self.completion_tokens, self.reasoning_tokens
        )
    }
}

impl From<cocoon_core::Usage> for ReceiptUsage {
    fn from(u: cocoon_core::Usage) -> Self {
        ReceiptUsage {
            prompt_tokens: u.prompt,
            cached_tokens: u.cached,
            completion_tokens: u.completion,
            reasoning_tokens: u.reasoning,
        }
    }
}

impl From<ReceiptUsage> for cocoon_core::Usage {
    fn from(u: ReceiptUsage) -> Self {
        cocoon_core::Usage {
            prompt: u.prompt_tokens,
            cached: u.cached_tokens,
            completion: u.completion_tokens,
            reasoning: u.reasoning_tokens,
        }
    }
}

/// The proxy the worker answered through, as the worker knew it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyIdentity {
    /// The proxy's name, from its welcome.
    pub name: String,
    /// Its proxy contract on chain ("0:<hex>"), when it charges.
    pub contract: Option<String>,
}

/// What a worker states about one answer. Every member is signed: the
/// signature covers [`crate::ReceiptFacts`], which hashes this structure's
/// JSON, members in this order (see [`SignedReceipt::signed_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// [`RECEIPT_VERSION`].
    pub version: u32,
    /// The network's id of the request.
    pub request_id: String,
    /// SHA-256 of the request body as the engine ran it, hex.
    pub request_sha256: String,
    /// Whether the answer was streamed (it decides how `answer_sha256` is
    /// computed: [`crate::digest`]).
    pub stream: bool,
    /// Digest of the whole answer as delivered, hex ([`crate::digest`]).
    pub answer_sha256: String,
    /// What the answer says, whatever its form ([`crate::digest::content`]),
    /// hex: what replicas and spot-checks compare, and what slash evidence
    /// shows. Present for deterministic requests (temperature 0 or a seed).
    pub content_sha256: Option<String>,
    /// The engine's response id (`id` of the answer or of its chunks).
    pub response_id: String,
    /// The model name the answer names.
    pub model: String,
    /// SHA-256 of the weights that ran, hex, when the engine knows them.
    pub model_hash: Option<String>,
    /// Tokens used.
    pub usage: ReceiptUsage,
    /// The worker's name with its proxy.
    pub worker: String,
    /// SHA-256 of the worker's RA-TLS certificate (DER), hex: the
    /// certificate whose key signed this receipt.
    pub worker_certificate_sha256: String,
    /// The worker's TEE kind, as its own evidence says.
    pub tee: Option<String>,
    /// The worker's image hash, as its own evidence says, hex.
    pub image_hash: Option<String>,
    /// The worker's price coefficient, per-mille.
    pub coefficient: u32,
    /// The proxy's price list for the request; `None` when it charges nothing.
    pub prices: Option<PriceList>,
    /// What the answer costs the client at these prices, nanoton.
    pub cost_nanoton: Option<u64>,
    /// What it earns the worker, nanoton.
    pub worker_fee_nanoton: Option<u64>,
    /// The proxy it answered through.
    pub proxy: ProxyIdentity,
    /// When the worker received the request, UNIX milliseconds.
    pub started_at_ms: u64,
    /// When it finished the answer, UNIX milliseconds.
    pub finished_at_ms: u64,
}

/// A receipt and the worker's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// What is signed.
    pub receipt: ReceiptBody,
    /// Ed25519 signature over [`SignedReceipt::signed_message`], hex.
    pub signature: String,
    /// Where the receipt sits in the batch signed together; absent when
    /// the signature covers this receipt alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchProof>,
}

impl SignedReceipt {
    /// The hash of a body's facts: the representation hash of its
    /// [`crate::ReceiptFacts`] cell, which a worker contract can compute
    /// too. Re-encoding a parsed body gives the same JSON (no maps, no
    /// floats, fixed member order), so a receipt that travelled through
    /// other JSON still verifies.
    pub fn facts_hash(body: &ReceiptBody) -> Result<[u8; 32], ReceiptError> {
        crate::facts::ReceiptFacts::of(body)?.hash()
    }

    /// What the signature covers: the root of the receipt's batch, which
    /// is its facts hash when it was signed alone.
    pub fn signed_message(&self) -> Result<[u8; 32], ReceiptError> {
        crate::batch::root(Self::facts_hash(&self.receipt)?, self.batch.as_ref())
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a receipt always encodes")
    }

    /// Parses a receipt from JSON, refusing unknown members and versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let r: SignedReceipt =
            serde_json::from_slice(bytes).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        r.check_version()?;
        Ok(r)
    }

    /// Parses a receipt from a JSON value (an answer's member).
    pub fn from_value(v: &serde_json::Value) -> Result<Self, ReceiptError> {
        let r: SignedReceipt = serde_json::from_value(v.clone())
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        r.check_version()?;
        Ok(r)
    }

    fn check_version(&self) -> Result<(), ReceiptError> {
        match self.receipt.version {
            RECEIPT_VERSION | 3 => Ok(()),
            2 if self.batch.is_none() => Ok(()),
            2 => Err(ReceiptError::Malformed(
                "a version 2 receipt cannot be signed in a batch".into(),
            )),
            v => Err(ReceiptError::Malformed(format!(
                "receipt version {v}, this verifier reads 2 to {RECEIPT_VERSION}"
            ))),
        }
    }
}

/// Signs receipts with the worker's receipt key, naming one RA-TLS
/// certificate whose claims carry that key.
pub struct ReceiptSigner {
    key: ring::signature::Ed25519KeyPair,
    certificate: Vec<u8>,
    certificate_sha256: String,
    tee: Option<String>,
    image_hash: Option<String>,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSigner")
            .field("certificate_sha256", &self.certificate_sha256)
            .field("tee", &self.tee)
            .finish_non_exhaustive()
    }
}

impl ReceiptSigner {
    /// A signer for `certificate` (DER) with the worker's PKCS#8 Ed25519
    /// receipt key. `tee` and `image_hash` are what the certificate's own
    /// evidence proves, when the worker could tell; they are signed into
    /// every receipt. The key must be the receipt key the certificate's
    /// claims name.
    pub fn new(
        certificate: Vec<u8>,
        pkcs8: &[u8],
        tee: Option<cocoon_tee::TeeKind>,
        image_hash: Option<cocoon_tee::ImageHash>,
    ) -> Result<Self, ReceiptError> {
        use ring::signature::KeyPair;
        let key = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| ReceiptError::Malformed(format!("receipt signing key: {e}")))?;
        if let Ok(cert) = cocoon_tee::cert::parse(&certificate) {
            if cert.claims.receipt_key.as_ref().map(|k| &k[..]) != Some(key.public_key().as_ref()) {
                return Err(ReceiptError::Malformed(
                    "the receipt signing key is not the receipt key the certificate's claims name"
                        .into(),
                ));
            }
        }
        Ok(ReceiptSigner {
            key,
            certificate_sha256: crate::digest::sha256_hex(&certificate),
            certificate,
            tee: tee.map(|k| k.as_str().to_string()),
            image_hash: image_hash.map(|h| h.to_string()),
        })
    }

    /// The certificate (DER) whose key signs.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// Its SHA-256, hex.
    pub fn certificate_sha256(&self) -> &str {
        &self.certificate_sha256
    }

    /// The public key that signs.
    pub fn public_key(&self) -> [u8; 32] {
        use ring::signature::KeyPair;
        let mut k = [0u8; 32];
        k.copy_from_slice(self.key.public_key().as_ref());
        k
    }

    /// Signs `body` alone. Fails only on a body whose hashes are not 32
    /// bytes of hex.
    pub fn sign(&self, body: ReceiptBody) -> Result<SignedReceipt, ReceiptError> {
        let prepared = self.prepare(body)?;
        Ok(self
            .sign_batch(vec![prepared])
            .pop()
            .expect("one receipt in, one out"))
    }

    /// Names this signer's certificate, TEE and image in `body` and hashes
    /// its facts: everything about a receipt but the signature, which
    /// [`ReceiptSigner::sign_batch`] then shares among many.
    pub fn prepare(&self, mut body: ReceiptBody) -> Result<PreparedReceipt, ReceiptError> {
        body.version = RECEIPT_VERSION;
        body.worker_certificate_sha256 = self.certificate_sha256.clone();
        body.tee = self.tee.clone();
        body.image_hash = self.image_hash.clone();
        let leaf = SignedReceipt::facts_hash(&body)?;
        Ok(PreparedReceipt { body, leaf })
    }

    /// Signs prepared receipts, one signature per [`MAX_BATCH`] of them
    /// over the root of their tree; in order.
    pub fn sign_batch(&self, prepared: Vec<PreparedReceipt>) -> Vec<SignedReceipt> {
        let mut out = Vec::with_capacity(prepared.len());
        let mut rest = prepared.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<PreparedReceipt> = rest.by_ref().take(MAX_BATCH).collect();
            let leaves: Vec<[u8; 32]> = chunk.iter().map(|p| p.leaf).collect();
            let (root, proofs) = crate::batch::tree(&leaves);
            let signature = hex::encode(self.key.sign(&root).as_ref());
            out.extend(
                chunk
                    .into_iter()
                    .zip(proofs)
                    .map(|(p, batch)| SignedReceipt {
                        receipt: p.body,
                        signature: signature.clone(),
                        batch,
                    }),
            );
        }
        out
    }
}

/// A receipt body ready to be signed, with the hash of its facts.
#[derive(Debug, Clone)]
pub struct PreparedReceipt {
    body: ReceiptBody,
    leaf: [u8; 32],
}
