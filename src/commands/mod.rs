//! One module per verb.

pub mod chaos;
pub mod check;
pub mod inspect;
pub mod run;
pub mod serve;
pub mod status;
pub mod swap;
