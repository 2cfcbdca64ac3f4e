//! One module per verb.

pub mod chaos;
pub mod check;
pub mod inspect;
pub mod keygen;
pub mod pull;
pub mod push;
pub mod run;
pub mod serve;
pub mod sign;
pub mod status;
pub mod swap;
