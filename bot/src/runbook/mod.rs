//! Runbooks as code: the file format ([`model`]), loading and linting
//! ([`load`]), expectations ([`expect`]) and running the checks ([`run`]).

pub mod expect;
pub mod load;
pub mod model;
pub mod recovery;
pub mod run;
pub mod worker;
