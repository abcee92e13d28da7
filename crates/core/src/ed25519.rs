//! Ed25519 public keys that must not be trusted: points of small order.
//!
//! Under a key that encodes a point of order 1, 2, 4 or 8, the signature
//! R = identity, S = 0 verifies over any message with a cofactorless
//! verifier such as TVM's `CHKSIGNU`; anyone could then sign for that key.
//! The encodings refused are libsodium's blocklist
//! (`ge25519_has_small_order`): seven y-coordinates, each with either sign
//! bit, the non-canonical y = p and y = p + 1 included. The contracts
//! refuse the same list (contracts/src/common/keys.tolk).

/// The y-coordinates (little-endian, sign bit clear) of the blocklist.
const SMALL_ORDER_Y: [[u8; 32]; 7] = [
    // y = 0: the two points of order 4
    [0; 32],
    // y = 1: the identity
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // the two y-coordinates of the points of order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // y = p - 1 (order 2), y = p (= 0) and y = p + 1 (= 1)
    small_order_near_p(0xec),
    small_order_near_p(0xed),
    small_order_near_p(0xee),
];

const fn small_order_near_p(low: u8) -> [u8; 32] {
    let mut y = [0xff; 32];
    y[0] = low;
    y[31] = 0x7f;
    y
}

/// Whether `key` encodes a point of small order, in any spelling.
pub fn is_small_order(key: &[u8; 32]) -> bool {
    let mut y = *key;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocklist_is_fourteen_encodings_and_no_ordinary_key() {
        let mut refused = 0;
        for y in SMALL_ORDER_Y {
            for sign in [0u8, 0x80] {
                let mut k = y;
                k[31] |= sign;
                assert!(is_small_order(&k), "{k:02x?}");
                refused += 1;
            }
        }
        assert_eq!(refused, 14);
        // RFC 8032's test 1 public key, and the base point.
        let rfc = [
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ];
        let mut base = [0x66; 32];
        base[0] = 0x58;
        assert!(!is_small_order(&rfc));
        assert!(!is_small_order(&base));
    }
}
