//! The `tcp` probe. See [`TcpProbe`] for the data it observes.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;

use super::{Observation, ProbeError, Target};

/// `kind = "tcp"`: connect within the timeout.
///
/// Data: `{"connected": true, "address": "10.0.0.5:5432", "connect_ms": 1.2}`,
/// or `{"connected": false, "address": …, "error": "connection refused"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// Any target with an address.
    pub target: String,
}

/// Observes `p` on `target`.
pub async fn observe(
    p: &TcpProbe,
    target: &Target,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let _ = p;
    let name = &target.name;
    let Some(address) = target.address() else {
        return Err(ProbeError::Config(
            name.clone(),
            format!(
                "no host:port can be derived from this {} target",
                target.settings.kind()
            ),
        ));
    };
    let started = Instant::now();
    // Whether it connects is what this probe observes: a refused or
    // timed-out connection is an answer (`connected` false), not an error.
    let refused = |why: String| Observation {
        data: json!({"connected": false, "address": address, "error": why}),
        evidence: format!("cannot connect to {address}: {why}"),
    };
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address.as_str())).await {
        Err(_) => return Ok(refused(format!("no answer within {timeout:?}"))),
        Ok(Err(e)) => return Ok(refused(e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    let connect_ms = (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    drop(stream);
    Ok(Observation {
        data: json!({
            "connected": true,
            "address": address,
            "connect_ms": connect_ms,
        }),
        evidence: format!("connected to {address} in {connect_ms} ms"),
    })
}
