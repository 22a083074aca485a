//! Mock-driven unit tests of the services.
