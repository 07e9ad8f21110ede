//! Being written (see README, Reliability).
