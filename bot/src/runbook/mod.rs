//! Runbooks as code: the file format ([`model`]), loading and linting
//! ([`load`]), expectations ([`expect`]), running the checks ([`run`]) and
//! their report as users read it in JSON ([`report_json`]).

pub mod expect;
pub mod load;
pub mod model;
pub mod recovery;
pub mod report_json;
pub mod run;
pub mod worker;
