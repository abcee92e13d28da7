//! A request sealed end to end, from the client to the workers it verified.
//!
//! The client draws a fresh request key, encrypts the body once under it
//! (AES-256-GCM), and wraps the key for every worker it accepts (X25519
//! with one ephemeral key, HKDF-SHA256, AES-256-GCM), so the proxy can still
//! choose among them, queue, retry and replicate. The routing facts the
//! proxy needs (model, endpoint, stream, `max_tokens`, whether sampling is
//! deterministic) travel in the clear and are bound into the body's
//! associated data: changed, the body does not open.
//!
//! Each worker seals its answer's chunks under a key derived from the
//! request key and its own public key (replicas never share a key) with a
//! random nonce, bound to the chunk's index. Receipts take their digests
//! with a salt the request key gives, so replicas' digests still compare,
//! and the proxy cannot test a guessed prompt or answer against them.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use x25519_dalek::{PublicKey, StaticSecret};

const WRAP_INFO: &[u8] = b"cocoon/seal/wrap/v1";
const BODY_INFO: &[u8] = b"cocoon/seal/body/v1";
const ANSWER_INFO: &[u8] = b"cocoon/seal/answer/v1";
const SALT_INFO: &[u8] = b"cocoon/seal/receipt-salt/v1";
const BINDING_DOMAIN: &[u8] = b"cocoon/seal/binding/v1\0";
const CHUNK_DOMAIN: &[u8] = b"cocoon/seal/chunk/v1\0";
/// Random nonce and tag.
const AEAD_OVERHEAD: usize = 12 + 16;
/// Sealed bodies and chunks are padded to a multiple of this many bytes:
/// streamed one token at a time, their lengths would otherwise spell out
/// the tokens' lengths to whoever relays them.
pub const PADDING: usize = 256;

/// Where a worker's error message for a sealed request sits among its
/// answer's chunks: a position no chunk takes.
pub const ERROR_INDEX: u64 = u64::MAX;
/// What a sealed error message starts with, before its hex.
pub const SEALED_MESSAGE_PREFIX: &str = "sealed:";

/// Why something did not seal or open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A key is a low-order point, or not 32 bytes.
    #[error("{0}")]
    Key(String),
    /// No wrapped key is for this worker, or it did not unwrap.
    #[error("{0}")]
    Unwrap(String),
    /// The body or a chunk failed authentication.
    #[error("{0}")]
    Open(String),
    /// The system's randomness failed.
    #[error("the system's randomness failed")]
    Random,
}

/// The clear routing facts a sealed body is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The network's request id.
    pub request_id: &'a str,
    /// The model asked for.
    pub model: &'a str,
    /// The endpoint's path.
    pub endpoint: &'a str,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// The body's `max_tokens` (0 when it sets none).
    pub max_tokens: u64,
    /// Temperature 0 or a seed.
    pub deterministic: bool,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut out = BINDING_DOMAIN.to_vec();
        for s in [self.request_id, self.model, self.endpoint] {
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.push(u8::from(self.stream));
        out.extend_from_slice(&self.max_tokens.to_be_bytes());
        out.push(u8::from(self.deterministic));
        out
    }
}

/// A sealed request as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The client's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
    /// `(worker public key, wrapped request key)` for each worker that may run it.
    pub keys: Vec<([u8; 32], Vec<u8>)>,
    /// The body, `nonce ‖ ciphertext ‖ tag`.
    pub ciphertext: Vec<u8>,
}

/// The secret every party to one request derives its keys from.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestKey([u8; 32]);

impl std::fmt::Debug for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestKey(..)")
    }
}

struct Len(usize);
impl ring::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(ikm: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[])
        .extract(ikm)
        .expand(info, Len(32))
        .and_then(|okm| okm.fill(&mut out))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

fn aead(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut out = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .map_err(|_| SealError::Random)?;
    Ok(out)
}

/// `nonce ‖ AES-GCM(key, nonce, plaintext, aad)` with a random nonce, the
/// plaintext padded when `padded`.
fn encrypt(
    key: &LessSafeKey,
    plaintext: &[u8],
    aad: &[u8],
    padded: bool,
) -> Result<Vec<u8>, SealError> {
    let iv: [u8; 12] = random()?;
    let mut out = Vec::with_capacity(plaintext.len() + PADDING + AEAD_OVERHEAD);
    out.extend_from_slice(&iv);
    if padded {
        pad_into(plaintext, &mut out)?;
    } else {
        out.extend_from_slice(plaintext);
    }
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad),
            &mut out[12..],
        )
        .map_err(|_| SealError::Open("AES-GCM refused to seal".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Appends `len (u32, big-endian) ‖ bytes ‖ zeros` up to a multiple of
/// [`PADDING`].
fn pad_into(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| SealError::Open("more than 4 GiB to seal".into()))?;
    let total = (4 + bytes.len()).div_ceil(PADDING) * PADDING;
    let start = out.len();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    out.resize(start + total, 0);
    Ok(())
}

fn unpad(mut padded: Vec<u8>, what: &str) -> Result<Vec<u8>, SealError> {
    let bad = || SealError::Open(format!("{what} is not padded as sealed bytes are"));
    let len = padded.get(..4).ok_or_else(bad)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if 4 + len > padded.len() {
        return Err(bad());
    }
    padded.truncate(4 + len);
    padded.drain(..4);
    Ok(padded)
}

fn decrypt(key: &LessSafeKey, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, SealError> {
    if sealed.len() < AEAD_OVERHEAD {
        return Err(SealError::Open(format!(
            "{what} is shorter than its nonce and tag"
        )));
    }
    let (iv, body) = sealed.split_at(12);
    let iv = <[u8; 12]>::try_from(iv).map_err(|_| SealError::Open(what.to_owned()))?;
    let mut buf = body.to_vec();
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
        .map_err(|_| {
            SealError::Open(format!(
                "{what} failed authentication (another key, or altered bytes or routing facts)"
            ))
        })?;
    Ok(plain.to_vec())
}

fn shared_secret(secret: &StaticSecret, public: &[u8; 32]) -> Result<[u8; 32], SealError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(SealError::Key(format!(
            "{} is a low-order X25519 point",
            hex32(public)
        )));
    }
    Ok(*shared.as_bytes())
}

fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn wrap_key(shared: &[u8; 32], ephemeral: &[u8; 32], worker: &[u8; 32]) -> [u8; 32] {
    hkdf(shared, &[WRAP_INFO, ephemeral, worker])
}

/// Most key-encryption keys a sender or a worker keeps.
const KEPT_KEKS: usize = 4096;

/// Key-encryption keys by the other side's public key: the X25519
/// agreement behind each is made once, for as long as it is kept.
#[derive(Default)]
struct Keks(std::sync::Mutex<std::collections::HashMap<[u8; 32], [u8; 32]>>);

impl Keks {
    fn get_or_derive(
        &self,
        peer: &[u8; 32],
        derive: impl FnOnce() -> Result<[u8; 32], SealError>,
    ) -> Result<[u8; 32], SealError> {
        let mut keks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = keks.get(peer) {
            return Ok(*k);
        }
        let kek = derive()?;
        if keks.len() >= KEPT_KEKS {
            keks.clear();
        }
        keks.insert(*peer, kek);
        Ok(kek)
    }
}

/// A client's ephemeral X25519 key, used for the requests of a short
/// window: the X25519 agreement with each worker is made once per window,
/// not per request. Every request still draws its own request key, wrapped
/// under the window's key-encryption key with a random nonce.
pub struct Sender {
    secret: StaticSecret,
    public: [u8; 32],
    keks: Keks,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sender({})", hex32(&self.public))
    }
}

impl Sender {
    /// A fresh ephemeral key.
    pub fn generate() -> Result<Self, SealError> {
        let secret = StaticSecret::from(random::<32>()?);
        let public = PublicKey::from(&secret).to_bytes();
        Ok(Sender {
            secret,
            public,
            keks: Default::default(),
        })
    }

    fn kek(&self, worker: &[u8; 32]) -> Result<[u8; 32], SealError> {
        self.keks.get_or_derive(worker, || {
            Ok(wrap_key(
                &shared_secret(&self.secret, worker)?,
                &self.public,
                worker,
            ))
        })
    }
}

/// Seals `body` for the workers whose end-to-end keys are `workers`, with a
/// fresh ephemeral key.
pub fn seal(
    body: &[u8],
    binding: &Binding<'_>,
    workers: &[[u8; 32]],
) -> Result<(Sealed, RequestKey), SealError> {
    seal_from(&Sender::generate()?, body, binding, workers)
}

/// Seals `body` for the workers whose end-to-end keys are `workers`, from
/// `sender`'s ephemeral key.
pub fn seal_from(
    sender: &Sender,
    body: &[u8],
    binding: &Binding<'_>,
    workers: &[[u8; 32]],
) -> Result<(Sealed, RequestKey), SealError> {
    seal_with(sender, RequestKey(random()?), body, binding, workers)
}

/// [`seal_from`] under a request key the sender chose: the same key for
/// every retry of one idempotent request, so an answer recorded from the
/// first run still opens. Its bytes must be secret and never reused for
/// another request.
pub fn seal_with(
    sender: &Sender,
    key: RequestKey,
    body: &[u8],
    binding: &Binding<'_>,
    workers: &[[u8; 32]],
) -> Result<(Sealed, RequestKey), SealError> {
    let ephemeral_public = sender.public;
    let mut keys = Vec::with_capacity(workers.len());
    for worker in workers {
        let kek = sender.kek(worker)?;
        let wrapped = encrypt(&aead(&kek), &key.0, binding.request_id.as_bytes(), false)?;
        keys.push((*worker, wrapped));
    }
    let ciphertext = encrypt(&aead(&key.body_key()), body, &binding.aad(), true)?;
    Ok((
        Sealed {
            ephemeral: ephemeral_public,
            keys,
            ciphertext,
        },
        key,
    ))
}

/// A worker's end-to-end key pair.
pub struct WorkerKey {
    secret: StaticSecret,
    public: [u8; 32],
    /// Key-encryption keys by the client's ephemeral key.
    keks: Keks,
}

impl std::fmt::Debug for WorkerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerKey({})", hex32(&self.public))
    }
}

impl WorkerKey {
    /// A fresh key.
    pub fn generate() -> Result<Self, SealError> {
        Ok(Self::from_secret(random()?))
    }

    /// The key whose private scalar is `secret`.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret).to_bytes();
        WorkerKey {
            secret,
            public,
            keks: Default::default(),
        }
    }

    fn kek(&self, ephemeral: &[u8; 32]) -> Result<[u8; 32], SealError> {
        self.keks.get_or_derive(ephemeral, || {
            let shared = shared_secret(&self.secret, ephemeral)?;
            Ok(wrap_key(&shared, ephemeral, &self.public))
        })
    }

    /// The public key its certificate's claims name.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Opens a request sealed for this worker (among others): its body and
    /// the request key its answer is sealed with.
    pub fn open(
        &self,
        ephemeral: &[u8; 32],
        wrapped: &[u8],
        ciphertext: &[u8],
        binding: &Binding<'_>,
    ) -> Result<(Vec<u8>, RequestKey), SealError> {
        let kek = self.kek(ephemeral)?;
        let raw = decrypt(
            &aead(&kek),
            wrapped,
            binding.request_id.as_bytes(),
            "the wrapped request key",
        )
        .map_err(|e| SealError::Unwrap(e.to_string()))?;
        let key = RequestKey(<[u8; 32]>::try_from(raw.as_slice()).map_err(|_| {
            SealError::Unwrap(format!("the request key is {} bytes, not 32", raw.len()))
        })?);
        let body = decrypt(
            &aead(&key.body_key()),
            ciphertext,
            &binding.aad(),
            "the sealed body",
        )?;
        Ok((unpad(body, "the sealed body")?, key))
    }
}

impl RequestKey {
    /// A key from secret bytes the sender derived (see [`seal_with`]).
    pub fn from_secret(bytes: [u8; 32]) -> Self {
        RequestKey(bytes)
    }

    fn body_key(&self) -> [u8; 32] {
        hkdf(&self.0, &[BODY_INFO])
    }

    /// The key one worker seals its answer's chunks with, derived once
    /// for all of them.
    pub fn answer(&self, worker: &[u8; 32], request_id: &str) -> AnswerKey {
        AnswerKey {
            key: aead(&hkdf(&self.0, &[ANSWER_INFO, worker])),
            request_id: request_id.to_owned(),
        }
    }

    /// Seals chunk `index` of the answer of the worker whose key is `worker`.
    pub fn seal_chunk(
        &self,
        worker: &[u8; 32],
        request_id: &str,
        index: u64,
        chunk: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        self.answer(worker, request_id).seal(index, chunk)
    }

    /// Opens chunk `index` of the answer of the worker whose key is `worker`.
    pub fn open_chunk(
        &self,
        worker: &[u8; 32],
        request_id: &str,
        index: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        self.answer(worker, request_id).open(index, sealed)
    }

    /// The salt of the request's receipt digests: the client and every
    /// worker that opened the request derive it alike; the proxy cannot.
    pub fn receipt_salt(&self) -> [u8; 32] {
        hkdf(&self.0, &[SALT_INFO])
    }
}

/// One worker's answer key for one request.
pub struct AnswerKey {
    key: LessSafeKey,
    request_id: String,
}

impl std::fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerKey")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl AnswerKey {
    fn aad(&self, index: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(CHUNK_DOMAIN.len() + 8 + self.request_id.len());
        aad.extend_from_slice(CHUNK_DOMAIN);
        aad.extend_from_slice(&index.to_be_bytes());
        aad.extend_from_slice(self.request_id.as_bytes());
        aad
    }

    /// Seals chunk `index`, padded.
    pub fn seal(&self, index: u64, chunk: &[u8]) -> Result<Vec<u8>, SealError> {
        encrypt(&self.key, chunk, &self.aad(index), true)
    }

    /// Opens chunk `index`.
    pub fn open(&self, index: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let what = format!("answer chunk {index}");
        let padded = decrypt(&self.key, sealed, &self.aad(index), &what)?;
        unpad(padded, &what)
    }
}

#[cfg(test)]
mod tests;
