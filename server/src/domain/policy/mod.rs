//! The approval policy (being split into files along its seams; see the next commit).

mod evaluate;

pub use evaluate::*;
