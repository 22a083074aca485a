//! Services: every rule of the contract.
