//! Parsing and validation of an agent's request body (being split into files along its
//! seams; see the next commit).

mod validate;

pub use validate::*;
