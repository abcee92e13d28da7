//! The OpenAI API surface in one place: error bodies, request validation
//! and the shapes of streamed events.

mod error;
mod validate;

pub use error::ApiError;
pub use validate::{
    validate, validate_under, Controls, E2eMode, ServingConstraints, Validated, E2E_HEADER,
    MAX_COEFFICIENT_HEADER, TIMEOUT_HEADER,
};
