//! TON mnemonics: 24 words from BIP-39's English list (the same list; its
//! SHA-256 is checked), turned into a key by TON's own derivation, not
//! BIP-39's (see [`crate::wallet::WalletKey::from_mnemonic`]). New ones are
//! generated as TON's wallets generate them, so any TON wallet app imports
//! them.

use ring::rand::SecureRandom;

/// BIP-39's English word list.
const WORDS_TEXT: &str = include_str!("mnemonic-words.txt");

/// How many words a TON mnemonic has.
pub const WORDS: usize = 24;

/// The word list, in order.
pub fn wordlist() -> Vec<&'static str> {
    WORDS_TEXT.lines().collect()
}

/// Whether `word` is one of the list's.
pub fn is_word(word: &str) -> bool {
    WORDS_TEXT.lines().any(|w| w == word)
}

/// Why no mnemonic could be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MnemonicError {
    /// The system's random source failed.
    #[error("no randomness from the system")]
    NoRandomness,
    /// No draw formed a TON mnemonic (odds about 1 in 10^170).
    #[error("no TON mnemonic found in 100 000 draws")]
    NotFound,
}

/// A new mnemonic: 24 random words that form a TON mnemonic without a
/// password (TON's check passes for about one phrase in 256, so a few
/// hundred draws are made).
pub fn generate() -> Result<String, MnemonicError> {
    let words = wordlist();
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..100_000 {
        let mut phrase = Vec::with_capacity(WORDS);
        for _ in 0..WORDS {
            let mut b = [0u8; 2];
            rng.fill(&mut b).map_err(|_| MnemonicError::NoRandomness)?;
            // 2048 words: 11 bits, uniform.
            phrase.push(words[usize::from(u16::from_le_bytes(b) & 0x7ff)]);
        }
        let phrase = phrase.join(" ");
        if crate::wallet::WalletKey::from_mnemonic(&phrase).is_ok() {
            return Ok(phrase);
        }
    }
    Err(MnemonicError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_bip39_english_and_new_mnemonics_are_ton_mnemonics() {
        let words = wordlist();
        assert_eq!(words.len(), 2048);
        assert_eq!((words[0], words[2047]), ("abandon", "zoo"));
        let digest = ring::digest::digest(&ring::digest::SHA256, WORDS_TEXT.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda",
            "BIP-39's english.txt"
        );
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.split(' ').count(), 24);
        assert!(a.split(' ').all(is_word));
        crate::wallet::WalletKey::from_mnemonic(&a).unwrap();
    }
}
