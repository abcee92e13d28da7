//! Cocoon payments.
