//! Resources built from input (regressions found by the fuzzer,
//! master/fuzz/corpus/resources/regression-*).

use agora_registry::resources::{AmountError, MAX_SCALAR_UNITS};
use agora_registry::*;

fn cpus(millis: u64) -> Resource {
    Resource {
        name: "cpus".into(),
        role: None,
        value: Value::Scalar(Scalar::from_millis(millis)),
    }
}

const MAX_MILLIS: u64 = MAX_SCALAR_UNITS as u64 * 1000;

fn too_large() -> ResourceError {
    ResourceError::Amount {
        name: "cpus".into(),
        source: AmountError::TooLarge,
    }
}

#[test]
fn merged_scalars_above_the_maximum_are_refused_as_input() {
    // Each token is within the maximum; merged, they are not.
    assert_eq!(
        Resources::parse("cpus:1000000000000;cpus:1"),
        Err(too_large())
    );
    assert_eq!(
        Resources::parse("cpus:1000000000000;cpus:1")
            .unwrap_err()
            .to_string(),
        "bad amount for resource \"cpus\": amount is larger than 1000000000000"
    );
    assert_eq!(
        Resources::from_checked(vec![cpus(MAX_MILLIS), cpus(1)]),
        Err(too_large())
    );
    // One item above the maximum (`Scalar::from_millis` is unchecked) is refused too.
    assert_eq!(
        Resources::from_checked(vec![cpus(MAX_MILLIS + 1)]),
        Err(too_large())
    );
    // At the maximum, merged or not, and reserved for another role: accepted, and its
    // text form reads back.
    let at_max = Resources::parse("cpus:999999999999.5;cpus:0.5;cpus(web):1000000000000").unwrap();
    assert_eq!(Resources::parse(&at_max.to_string()).unwrap(), at_max);
    assert_eq!(
        Resources::from_checked(vec![cpus(MAX_MILLIS - 1), cpus(1)]).unwrap(),
        Resources::from(vec![cpus(MAX_MILLIS)])
    );
}
