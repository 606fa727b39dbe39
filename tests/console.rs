//! The operator console (`/ui`): sign-in, sessions, CSRF and origin checks, escaping of hostile
//! tenants' and Vapi's texts over real HTTP, and the whole round in a real browser (headless
//! Chromium through chromedriver) against a real `run` process and the simulator: sign in, see a
//! failing agent, open a diff, reconcile and watch the state change, confirm a guard block.
//!
//! The browser test needs the Debian packages `chromium` and `chromium-driver` (`./test` installs
//! them); without them it fails naming what is missing. Screenshots go to
//! `target/console-screenshots/`, and to `docs/` (the README's pictures) with
//! `UPDATE_SCREENSHOTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const TOKEN: &str = "console-admin-token-0123456789";
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const HOSTILE_NAME: &str = "<script>alert(1)</script>";
const HOSTILE_MESSAGE: &str = "Vapi said: \"><img src=x onerror=alert(1)>";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF field");
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in over HTTP; the session cookie (`name=value`).
async fn sign_in(base: &str) -> String {
    let answer = http()
        .post(format!("{base}/ui/login"))
        .header("origin", base)
        .form(&[("token", TOKEN), ("next", "/ui")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    cookie.split(';').next().unwrap().to_owned()
}

async fn get(base: &str, path: &str, cookie: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let answer = http()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    (status, headers, answer.text().await.unwrap())
}

/// Seeds what tenants and Vapi wrote, at their most hostile, straight into the tables the pages
/// read: an organization and an agent with markup in their names, a status message, a drift
/// path, a journal entry and a guard block sample that carry markup too.
async fn seed_hostile(pool: &PgPool) -> (Uuid, i64) {
    let org = common::org(pool, "Clinic \"><img src=x onerror=alert(2)>").await;
    let agent = common::agent(pool, org, HOSTILE_NAME, common::spec(1)).await;
    sqlx::query(
        "insert into agent_status (agent_id, observed_generation, state, reason, message, drift,
                                   drift_detail, applied, normalizations)
         values ($1, 1, 'failed', 'VapiRejected', $2, '{firstMessage}',
                 '[{\"path\": \"firstMessage\", \"kind\": \"actual\"}]',
                 jsonb_build_object('firstMessage', $2::text),
                 array[$2::text])",
    )
    .bind(agent)
    .bind(HOSTILE_MESSAGE)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into journal (started_at, finished_at, epoch, holder, org_id, agent_id, generation,
                              action, outcome, assistant_id, why)
         values (now(), now(), 1, '<b>holder</b>', $1, $2, 1, 'patch', 'failed', 'asst-1', $3)",
    )
    .bind(org)
    .bind(agent)
    .bind(HOSTILE_MESSAGE)
    .execute(pool)
    .await
    .unwrap();
    let block: i64 = sqlx::query_scalar(
        "insert into guard_blocks (epoch, deletes, recreates, fleet, \"limit\", sample)
         values (1, 60, 0, 100, 50, jsonb_build_array(jsonb_build_object(
             'action', 'delete', 'agentId', $1::text, 'assistantIds', jsonb_build_array($2::text))))
         returning id",
    )
    .bind(agent.to_string())
    .bind(HOSTILE_MESSAGE)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into credential_health (fingerprint, scope, breaker_state, consecutive_failures,
                                        rejected_at, rejected_status, rejected_message)
         values ('0123abcd', 'platform', 'open', 5, now(), 401, $1)",
    )
    .bind(HOSTILE_MESSAGE)
    .execute(pool)
    .await
    .unwrap();
    (agent, block)
}

#[sqlx::test]
async fn sign_in_sessions_and_csrf(pool: PgPool) {
    let (addr, cancel) = common::serve_api(&pool, TOKEN, Default::default()).await;
    let base = format!("http://{addr}");

    // Without a session a page sends the browser to the form, and back afterwards.
    let answer = http()
        .get(format!("{base}/ui/agents?state=failed"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(
        answer.headers()["location"],
        "/ui/login?next=%2Fui%2Fagents%3Fstate%3Dfailed"
    );
    let (code, headers, page) = get(&base, "/ui/login", "").await;
    assert_eq!(code, 200);
    assert_eq!(headers["content-security-policy"], CSP);
    assert!(page.contains("name=\"token\""), "{page}");

    // A wrong token is refused; so is a right one sent from another origin.
    let wrong = http()
        .post(format!("{base}/ui/login"))
        .header("origin", &base)
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("The admin token is wrong.")
    );
    let foreign = http()
        .post(format!("{base}/ui/login"))
        .header("origin", "http://evil.example")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);

    // The right one: a session cookie that does not hold the token, HttpOnly and SameSite=Strict,
    // and a redirect that stays on this console whatever `next` says.
    let answer = http()
        .post(format!("{base}/ui/login"))
        .header("origin", &base)
        .form(&[("token", TOKEN), ("next", "//evil.example/ui")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()["location"], "/ui");
    let set_cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/ui"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    assert!(!set_cookie.contains(TOKEN));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let (code, headers, page) = get(&base, "/ui", &cookie).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(!page.contains(TOKEN));
    assert!(page.contains("Last full pass"), "{page}");
    assert!(page.contains("Last focused pass"), "{page}");
    let csrf = csrf_of(&page);

    // A path no page answers is an HTML page of this console, under its policy, not the API's
    // JSON; the path is not echoed back.
    let (code, headers, page) = get(&base, "/ui/agentz/<b>x</b>", &cookie).await;
    assert_eq!(code, 404, "{page}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], CSP);
    assert!(page.contains("No page lives at this address."), "{page}");
    assert!(!page.contains("agentz"), "{page}");

    // Every POST needs the session's CSRF token and this origin.
    let post = |fields: Vec<(&'static str, String)>, origin: &str| {
        http()
            .post(format!("{base}/ui/reconcile"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .form(&fields)
            .send()
    };
    let no_csrf = post(vec![], &base).await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    let bad_csrf = post(vec![("csrf", "00".to_owned())], &base).await.unwrap();
    assert_eq!(bad_csrf.status(), 403);
    let elsewhere = post(vec![("csrf", csrf.clone())], "http://evil.example")
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 403);
    // Through the same trigger as /v1: this controller does not loop, so it stands by.
    let standby = post(vec![("csrf", csrf.clone())], &base).await.unwrap();
    assert_eq!(standby.status(), 409);
    assert!(standby.text().await.unwrap().contains("stands by"));
    // A CSRF token of another session does not pass.
    let other = sign_in(&base).await;
    let other_csrf = csrf_of(&get(&base, "/ui", &other).await.2);
    assert_ne!(other_csrf, csrf);
    let crossed = post(vec![("csrf", other_csrf)], &base).await.unwrap();
    assert_eq!(crossed.status(), 403);

    // A forged cookie is no session; signing out clears the cookie.
    let (code, _, _) = get(&base, "/ui", "vr_console=v1.1.00.00").await;
    assert_eq!(code, 303);
    let out = http()
        .post(format!("{base}/ui/logout"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (code, headers, js) = get(&base, "/ui/static/console.js", "").await;
    assert_eq!(
        (code, &headers["content-type"]),
        (200, &"text/javascript; charset=utf-8".parse().unwrap())
    );
    assert!(js.contains("data-refresh"));
    cancel.cancel();
}

#[sqlx::test]
async fn hostile_names_and_messages_are_escaped(pool: PgPool) {
    let (agent, block) = seed_hostile(&pool).await;
    let (addr, cancel) = common::serve_api(&pool, TOKEN, Default::default()).await;
    let base = format!("http://{addr}");
    let cookie = sign_in(&base).await;
    let pages = [
        "/ui".to_owned(),
        "/ui/agents".to_owned(),
        "/ui/agents?state=failed&sort=reason&dir=desc".to_owned(),
        format!("/ui/agents/{agent}"),
        format!("/ui/guard/{block}"),
        "/ui/tools".to_owned(),
        "/ui/numbers".to_owned(),
    ];
    for path in &pages {
        let (code, headers, page) = get(&base, path, &cookie).await;
        assert_eq!(code, 200, "{path}: {page}");
        assert_eq!(headers["content-security-policy"], CSP, "{path}");
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(!page.contains("<img"), "{path}: {page}");
        assert!(!page.contains("<b>holder"), "{path}: {page}");
        assert!(!page.contains(TOKEN), "{path}");
        // Exactly one script, the console's own file.
        assert_eq!(page.matches("<script").count(), 1, "{path}");
        assert!(
            page.contains("<script src=\"/ui/static/console.js\""),
            "{path}"
        );
    }
    let (_, _, page) = get(&base, &format!("/ui/agents/{agent}"), &cookie).await;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    let (_, _, list) = get(&base, "/ui/agents?state=failed", &cookie).await;
    assert!(list.contains(&format!("/ui/agents/{agent}")), "{list}");
    let (_, _, fleet) = get(&base, "/ui", &cookie).await;
    assert!(fleet.contains("0123abcd"), "the key's fingerprint: {fleet}");
    assert!(
        fleet.contains(&format!("/ui/guard/{block}")),
        "the open block: {fleet}"
    );

    // Bad parameters are refused with a page, never passed on.
    for path in [
        "/ui/agents?org=nope",
        "/ui/agents?state=%27%3B%20drop",
        "/ui/agents?sort=id",
        "/ui/agents/not-a-uuid",
        "/ui/guard/x",
    ] {
        let (code, _, page) = get(&base, path, &cookie).await;
        assert_eq!(code, 400, "{path}: {page}");
    }
    cancel.cancel();
}

// ---------------------------------------------------------------------------------------------
// In a real browser

mod browser {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use fantoccini::{Client, ClientBuilder, Locator};

    pub const CHROMIUM: &str = "/usr/bin/chromium";
    pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

    /// chromedriver on a free port, and a headless Chromium session through it.
    pub struct Browser {
        pub client: Client,
        _driver: tokio::process::Child,
    }

    fn find(env: &str, default: &str) -> PathBuf {
        std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
    }

    impl Browser {
        pub async fn start() -> Self {
            let chromium = find("CHROMIUM", CHROMIUM);
            let driver = find("CHROMEDRIVER", CHROMEDRIVER);
            let missing: Vec<String> = [(&chromium, "chromium"), (&driver, "chromium-driver")]
                .iter()
                .filter(|(path, _)| !path.exists())
                .map(|(path, package)| format!("{} (Debian package {package})", path.display()))
                .collect();
            assert!(
                missing.is_empty(),
                "the console's browser test needs headless Chromium and its WebDriver; missing: {}. Install them with `apt-get install chromium chromium-driver` (./test does), or name them with CHROMIUM / CHROMEDRIVER",
                missing.join(", ")
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = tokio::process::Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
            let url = format!("http://127.0.0.1:{port}");
            let mut caps = serde_json::Map::new();
            caps.insert(
                "goog:chromeOptions".to_owned(),
                serde_json::json!({
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1400,1000",
                             "--hide-scrollbars"],
                }),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            let client = loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
                {
                    Ok(c) => break c,
                    Err(e) if Instant::now() > deadline => {
                        panic!("chromedriver at {url} gave no Chromium session within 30 s: {e}")
                    }
                    // chromedriver is still starting: its port does not answer yet.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            Self {
                client,
                _driver: child,
            }
        }

        /// Fails if the page opened a dialog (an `alert(1)` that got through).
        pub async fn assert_no_dialog(&self, what: &str) {
            if let Ok(text) = self.client.get_alert_text().await {
                panic!("{what}: a dialog opened: {text:?}");
            }
        }

        /// The page's DOM has no element the hostile data tried to make.
        pub async fn assert_no_injected_markup(&self, what: &str) {
            let imgs = self.client.find_all(Locator::Css("img")).await.unwrap();
            assert!(imgs.is_empty(), "{what}: an <img> was injected");
            let scripts = self.client.find_all(Locator::Css("script")).await.unwrap();
            assert_eq!(scripts.len(), 1, "{what}: only the console's own script");
            self.assert_no_dialog(what).await;
        }

        /// Clicks the element `locator` finds.
        pub async fn click(&self, locator: Locator<'_>) {
            self.client
                .find(locator)
                .await
                .unwrap_or_else(|e| panic!("nothing to click: {e}"))
                .click()
                .await
                .unwrap();
        }

        /// Types `text` into the field `css` names.
        pub async fn type_into(&self, css: &str, text: &str) {
            self.client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css}: {e}"))
                .send_keys(text)
                .await
                .unwrap();
        }

        pub async fn text(&self, css: &str) -> String {
            self.client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css}: {e}"))
                .text()
                .await
                .unwrap()
        }

        /// Polls until the browser is at `path` (a click's navigation may still be going on).
        pub async fn until_path(&self, path: &str, bound: Duration) {
            let deadline = Instant::now() + bound;
            loop {
                let at = self.client.current_url().await.unwrap();
                if at.path() == path {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "never reached {path} within {bound:?}; at {at}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// Polls until the element's text satisfies `check`; the page refreshes itself.
        pub async fn until_text(
            &self,
            css: &str,
            bound: Duration,
            check: impl Fn(&str) -> bool,
        ) -> String {
            let deadline = Instant::now() + bound;
            loop {
                if let Ok(e) = self.client.find(Locator::Css(css)).await {
                    if let Ok(t) = e.text().await {
                        if check(&t) {
                            return t;
                        }
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "{css} never matched within {bound:?}; page: {}",
                    self.client.source().await.unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        /// Saves what the browser shows as `name` (a PNG): under target/, and under docs/ with
        /// UPDATE_SCREENSHOTS=1.
        pub async fn screenshot(&self, name: &str) {
            let png = self.client.screenshot().await.unwrap();
            assert!(png.starts_with(b"\x89PNG"), "a PNG");
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let dir = root.join("target/console-screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), &png).unwrap();
            if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
                std::fs::write(root.join("docs").join(name), &png).unwrap();
            }
        }
    }
}

/// The status the view shows for an agent: (state, reason).
async fn view_state(pool: &PgPool, agent: Uuid) -> (String, String) {
    sqlx::query_as("select state, reason from agent_sync_status where agent_id = $1")
        .bind(agent)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn until_state(pool: &PgPool, agent: Uuid, state: &str) {
    common::process::eventually(
        &format!("agent {agent} {state}"),
        Duration::from_secs(60),
        || async { view_state(pool, agent).await.0 == state },
    )
    .await;
}

#[sqlx::test]
async fn the_console_in_a_real_browser(pool: PgPool) {
    use fantoccini::Locator;

    // The tenant's data: a front desk, an agent whose name is markup, and one whose spec Vapi's
    // rules refuse with a message that quotes markup back.
    let org = common::org(&pool, "Clinic North").await;
    let front = common::agent(&pool, org, "Front desk", common::spec(1)).await;
    let hostile = common::agent(&pool, org, HOSTILE_NAME, common::spec(2)).await;
    let mut broken_spec = common::spec(3);
    broken_spec["\"><img src=x onerror=alert(1)>"] = json!(true);
    let broken = common::agent(&pool, org, "Broken line", broken_spec).await;
    let night = common::agent(&pool, org, "Night line", common::spec(4)).await;

    let sim = vapi_reconciler::simulator::Simulator::new();
    let key = Uuid::new_v4().to_string();
    let vapi_org = Uuid::new_v4().to_string();
    sim.add_key(&key, &vapi_org);
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let url = common::process::url_of(&pool);
    let mut cmd = common::process::command(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--migrate",
            // Only a trigger starts a pass after the first: what the page shows is what the
            // console's buttons did.
            "--resync-interval",
            "1h",
            // Recreating two of four assistants exceeds the guard: the block to confirm.
            "--guard-max-share",
            "0.25",
            "--guard-min-count",
            "1",
        ],
        &url,
        &running.base_url(),
        &key,
    );
    cmd.env("ADMIN_TOKEN", TOKEN);
    let replica = common::process::Replica::start("console", cmd).await;
    let base = format!("http://{}", replica.addr);
    until_state(&pool, front, "synced").await;
    until_state(&pool, night, "synced").await;
    until_state(&pool, hostile, "synced").await;
    until_state(&pool, broken, "failed").await;
    let message: String =
        sqlx::query_scalar("select message from agent_sync_status where agent_id = $1")
            .bind(broken)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        message.contains("<img src=x"),
        "the hostile text reaches the page: {message}"
    );

    let b = browser::Browser::start().await;
    let c = &b.client;

    // Sign in: the form, a wrong token refused, the right one.
    c.goto(&format!("{base}/ui")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    b.type_into("#token", "wrong-token").await;
    b.click(Locator::Css("form.login button")).await;
    b.until_text("p.error", Duration::from_secs(10), |t| {
        t == "The admin token is wrong."
    })
    .await;
    b.type_into("#token", TOKEN).await;
    b.click(Locator::Css("form.login button")).await;
    // The sign-in's POST and its redirect may still be on their way: wait for where they lead.
    b.until_path("/ui", Duration::from_secs(10)).await;
    // The cookie is HttpOnly: the page's script cannot read it.
    let visible = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(visible, json!(""));

    // The fleet: one failed agent, linked.
    b.until_text("table.counts", Duration::from_secs(10), |t| {
        t.contains("failed")
    })
    .await;
    b.assert_no_injected_markup("fleet").await;
    b.screenshot("console-fleet.png").await;

    // The failing agent in the list, and its page: escaped name and message.
    c.goto(&format!("{base}/ui/agents?state=failed"))
        .await
        .unwrap();
    let list = b.text("table.agents tbody").await;
    assert!(
        list.contains("Broken line") && list.contains("InvalidSpec"),
        "{list}"
    );
    c.goto(&format!("{base}/ui/agents")).await.unwrap();
    let list = b.text("table.agents tbody").await;
    assert!(
        list.contains(HOSTILE_NAME),
        "the name shows as text: {list}"
    );
    b.assert_no_injected_markup("agents").await;
    b.screenshot("console-agents.png").await;
    c.goto(&format!("{base}/ui/agents/{broken}")).await.unwrap();
    assert!(
        b.text("#message")
            .await
            .contains("\"><img src=x onerror=alert(1)>")
    );
    b.assert_no_injected_markup("failing agent").await;
    c.goto(&format!("{base}/ui/agents/{hostile}"))
        .await
        .unwrap();
    assert_eq!(b.text("h1").await, HOSTILE_NAME);
    b.assert_no_injected_markup("hostile agent").await;

    // Someone edits the front desk's greeting in the Vapi dashboard. The page still says what the
    // last pass saw; the live comparison shows both sides.
    let assistant = common::status(&pool, front).await.assistant_id.unwrap();
    assert!(sim.edit_out_of_band(
        &assistant,
        json!({"firstMessage": "Edited in the Vapi dashboard."})
    ));
    c.goto(&format!("{base}/ui/agents/{front}")).await.unwrap();
    assert_eq!(b.text("#reason").await, "Created");
    b.click(Locator::Css("#compare")).await;
    b.until_text("#live-action", Duration::from_secs(10), |t| t == "patch")
        .await;
    let diff = b.text("#live-diff table.diff").await;
    assert!(diff.contains("firstMessage"), "{diff}");
    assert!(diff.contains("Hello from agent 1."), "desired: {diff}");
    assert!(
        diff.contains("Edited in the Vapi dashboard."),
        "actual: {diff}"
    );
    b.screenshot("console-agent.png").await;
    // The comparison wrote nothing: Vapi and the status are as they were.
    assert_eq!(
        sim.assistant(&assistant).unwrap()["firstMessage"],
        "Edited in the Vapi dashboard."
    );
    assert_eq!(view_state(&pool, front).await.1, "Created");

    // Reconcile now, and watch the page change by itself.
    c.goto(&format!("{base}/ui/agents/{front}")).await.unwrap();
    b.click(Locator::XPath(
        "//form[@action='/ui/reconcile'][input[@name='agent_id']]/button",
    ))
    .await;
    // The click's POST and its redirect may still be on their way: wait for the page they lead to.
    b.until_text("p.notice", Duration::from_secs(10), |t| {
        t.contains("Reconcile requested")
    })
    .await;
    b.until_text("#reason", Duration::from_secs(60), |t| t == "Patched")
        .await;
    assert_eq!(
        sim.assistant(&assistant).unwrap()["firstMessage"],
        "Hello from agent 1."
    );
    let timeline = b.text("table.timeline").await;
    assert!(
        timeline.contains("patch") && timeline.contains("ok"),
        "{timeline}"
    );

    // Two assistants vanish from Vapi: recreating both exceeds the guard (1 of 4), so the pass
    // stops and records a block; the operator confirms it on its page.
    for agent in [front, night] {
        let id = common::status(&pool, agent).await.assistant_id.unwrap();
        assert!(sim.delete_out_of_band(&id));
    }
    c.goto(&format!("{base}/ui")).await.unwrap();
    b.click(Locator::XPath(
        "//form[@action='/ui/reconcile'][not(input[@name='org_id'])]/button",
    ))
    .await;
    let block_link = b
        .until_text("a[href^='/ui/guard/']", Duration::from_secs(60), |t| {
            t.starts_with('#')
        })
        .await;
    b.click(Locator::Css("a[href^='/ui/guard/']")).await;
    let recreates = b
        .until_text("#recreates", Duration::from_secs(10), |t| t == "2")
        .await;
    assert_eq!(recreates, "2", "{block_link}");
    let sample = b.text("table").await;
    assert!(
        sample.contains("recreate") && sample.contains("Front desk"),
        "{sample}"
    );
    b.assert_no_injected_markup("guard").await;
    b.screenshot("console-guard.png").await;
    b.click(Locator::Css("form.action button.danger")).await;
    // The click's POST and its redirect may still be on their way: wait for the page they lead to.
    b.until_text("p.notice", Duration::from_secs(10), |t| {
        t.contains("Guard block confirmed")
    })
    .await;
    assert!(b.text("#confirmed").await.contains("by console"));
    until_state(&pool, front, "synced").await;
    until_state(&pool, night, "synced").await;
    assert_eq!(view_state(&pool, night).await.1, "AssistantRecreated");
    b.assert_no_dialog("the end").await;

    b.client.clone().close().await.unwrap();
    drop(replica);
}
