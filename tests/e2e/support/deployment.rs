//! The two deployments every end-to-end test runs against, and
//! [`e2e_tests!`], which defines a test once per deployment.

/// Where a test's server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// `DATABASE_URL` and `REDIS_URL` set: a database and a Redis key prefix
    /// of the test's own.
    Postgres,
    /// Neither set: the embedded SQLite store in a data directory of the
    /// test's own, and the in-process cache.
    Embedded,
}

tokio::task_local! {
    static CURRENT: Deployment;
}

impl Deployment {
    /// Runs `test` with `self` as the deployment [`TestApp::start`] picks.
    ///
    /// [`TestApp::start`]: super::TestApp::start
    pub async fn run<F: std::future::Future<Output = ()>>(self, test: F) {
        CURRENT.scope(self, test).await;
    }

    /// The deployment of the running test: the one [`Deployment::run`] set,
    /// or PostgreSQL + Redis for a test written for one deployment.
    pub fn current() -> Self {
        CURRENT.try_with(|d| *d).unwrap_or(Self::Postgres)
    }
}

/// Defines each named `async fn NAME()` of the calling module as two tests,
/// `NAME::postgres` and `NAME::embedded`, so one body proves both
/// deployments. An attribute before a name (`#[ignore = "..."]`) applies to
/// both.
macro_rules! e2e_tests {
    ($( $(#[$attr:meta])* $name:ident ),* $(,)?) => {
        $(
            mod $name {
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() {
                    $crate::support::Deployment::Postgres.run(super::$name()).await;
                }

                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread")]
                async fn embedded() {
                    $crate::support::Deployment::Embedded.run(super::$name()).await;
                }
            }
        )*
    };
}
