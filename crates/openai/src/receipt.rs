use serde::Serialize;

/// Who answered and at what price: the `cocoon` member of an answer (or of
/// a stream's last chunk), with the worker's signed receipt. Unknown parts
/// are `null`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Receipt {
    /// The worker's name.
    pub worker: String,
    /// Its price coefficient, per-mille.
    pub coefficient: u32,
    /// SHA-256 of the weights that answered, hex.
    pub model_hash: Option<String>,
    /// The worker's TEE kind, as the attested proxy verified it.
    pub worker_tee: Option<String>,
    /// The worker's image hash, likewise.
    pub worker_image_hash: Option<String>,
    /// The worker's signed receipt for this answer (`cocoon receipt
    /// verify` checks it offline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Box<serde_json::value::RawValue>>,
    /// The worker's RA-TLS certificate, base64 DER: the key that signed
    /// the receipt and the evidence of what it runs. Shared: every answer
    /// of the worker carries the same one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_certificate: Option<std::sync::Arc<str>>,
    /// How the client checked the receipt: `verified`, or why it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_status: Option<String>,
    /// For a replicated request: the workers that agreed (the answering
    /// one first), those that dissented or failed, and every run's receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<serde_json::Value>,
    /// For an answer sealed end to end: the salt its receipts' digests are
    /// taken with (hex). Kept with the answer, it lets anyone verify it;
    /// the proxy that relayed it never had it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// What the answering worker offered the request's trust requirements
    /// (tee, tcb, gpu, region, open), as this client verified it where its
    /// own policy can, and what the request demanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<serde_json::Value>,
    /// How the request's price was made: the worker's coefficient, the tier
    /// factors applied, the coefficient charged. Copied into
    /// `usage.cost_breakdown` with the cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_breakdown: Option<serde_json::Value>,
}

// Compared by value; the signed receipt by its JSON text.
impl PartialEq for Receipt {
    fn eq(&self, other: &Self) -> bool {
        self.worker == other.worker
            && self.coefficient == other.coefficient
            && self.model_hash == other.model_hash
            && self.worker_tee == other.worker_tee
            && self.worker_image_hash == other.worker_image_hash
            && self.receipt.as_ref().map(|r| r.get()) == other.receipt.as_ref().map(|r| r.get())
            && self.worker_certificate == other.worker_certificate
            && self.receipt_status == other.receipt_status
            && self.replication == other.replication
            && self.salt == other.salt
            && self.trust == other.trust
            && self.cost_breakdown == other.cost_breakdown
    }
}

/// Adds `receipt` to a whole answer as its `cocoon` member, and `cost` to
/// its `usage` when the request was charged. The answer is an engine's, so
/// every member it has is kept as it is; a body that is not a JSON object
/// is returned unchanged.
pub fn stamp_answer(body: &[u8], receipt: &Receipt, cost: Option<u64>) -> Option<Vec<u8>> {
    let serde_json::Value::Object(mut answer) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    answer.insert("cocoon".into(), serde_json::to_value(receipt).ok()?);
    if let (Some(c), Some(serde_json::Value::Object(usage))) = (cost, answer.get_mut("usage")) {
        usage.insert("cost_nanoton".into(), c.into());
        if let Some(b) = &receipt.cost_breakdown {
            usage.insert("cost_breakdown".into(), b.clone());
        }
    }
    serde_json::to_vec(&answer).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_keeps_the_engines_members_and_adds_the_receipt_and_cost() {
        let body = br#"{"id":"x","extra":{"a":1},"usage":{"prompt_tokens":3}}"#;
        let receipt = Receipt {
            worker: "w".into(),
            coefficient: 1000,
            model_hash: Some("ab".into()),
            receipt: Some(
                serde_json::value::RawValue::from_string(r#"{"signature":"00"}"#.into()).unwrap(),
            ),
            ..Receipt::default()
        };
        let out = stamp_answer(body, &receipt, Some(12)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["extra"]["a"], 1);
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(v["usage"]["cost_nanoton"], 12);
        assert_eq!(v["cocoon"]["worker"], "w");
        assert_eq!(v["cocoon"]["worker_tee"], serde_json::Value::Null);
        assert_eq!(
            v["cocoon"]["receipt"]["signature"], "00",
            "the receipt's JSON as it came"
        );
        assert!(stamp_answer(b"[1]", &receipt, None).is_none());
    }
}
