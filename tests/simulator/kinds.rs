//! Conformance tests of the simulator's non-assistant kinds over real HTTP (127.0.0.1): one table of
//! kinds drives create / list / get / patch / delete and the 400 / 401 / 404 answers, and focused
//! tests cover what the controller will rely on next (tool `server.url`, `model.toolIds`, phone
//! number binding and re-pointing, per-route counters, paged lists), against the shapes of Vapi's
//! OpenAPI document (the DTO named in each case). A module of `tests/simulator.rs`, sharing its
//! harness.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vapi_reconciler::simulator::{Fault, FaultMode, KIND_NAMES};

use super::{
    Env, INVALID_KEY_BODY, MISSING, ORG, OTHER_KEY, OTHER_ORG, bad, is_ms_timestamp, read,
};

impl Env {
    async fn send_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.http.request(method, self.url(path)).bearer_auth(key);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read(rb.send().await.unwrap()).await
    }

    /// `POST collection`, asserting 201.
    async fn create_in(&self, collection: &str, body: Value) -> Value {
        let (status, v) = self.send(Method::POST, collection, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{collection}: {v}");
        v
    }

    /// Seed a resource for `ORG` as if made on the dashboard; returns its id.
    fn seed(&self, kind: &str, body: Value) -> String {
        let v = self
            .sim
            .create_resource_out_of_band(kind, ORG, body)
            .unwrap();
        v["id"].as_str().unwrap().to_owned()
    }
}

fn not_found(message: &str) -> Value {
    json!({"message": message, "error": "Not Found", "statusCode": 404})
}

/// The items of a list answer, bare or paginated.
fn items(list: &Value, paginated: bool) -> &Vec<Value> {
    if paginated {
        list["results"].as_array().unwrap()
    } else {
        list.as_array().unwrap()
    }
}

/// One row of the conformance table.
struct Case {
    kind: &'static str,
    collection: &'static str,
    /// `GET collection` answers `{results, metadata}` (else a bare array).
    paginated: bool,
    /// A valid create body (the DTO named in the comment); it may use ids seeded by `prepare`.
    create: fn(&[String]) -> Value,
    /// Resources to seed first: (kind, body).
    prepare: fn() -> Vec<(&'static str, Value)>,
    /// A valid PATCH setting `field` to `value`.
    field: &'static str,
    value: fn() -> Value,
    /// An invalid create body and class-validator's messages for it.
    invalid: fn() -> Value,
    messages: &'static [&'static str],
}

fn nothing() -> Vec<(&'static str, Value)> {
    Vec::new()
}

fn cases() -> Vec<Case> {
    vec![
        // CreateFunctionToolDTO / UpdateFunctionToolDTO
        Case {
            kind: "tool",
            collection: "/tool",
            paginated: false,
            create: |_| {
                json!({"type": "function",
                       "function": {"name": "lookup_order", "description": "Find an order",
                                    "parameters": {"type": "object", "properties": {}}},
                       "server": {"url": "https://hooks.example.com/tools"}})
            },
            prepare: nothing,
            field: "server",
            value: || json!({"url": "https://hooks.example.com/v2", "timeoutSeconds": 20}),
            invalid: || json!({"type": "function", "async": "yes", "serverUrl": "x"}),
            messages: &[
                "property serverUrl should not exist",
                "async must be a boolean value",
            ],
        },
        // CreateByoPhoneNumberDTO / UpdateByoPhoneNumberDTO
        Case {
            kind: "phone-number",
            collection: "/phone-number",
            paginated: false,
            create: |_| {
                json!({"provider": "byo-phone-number", "number": "+14155550100",
                       "credentialId": "6f1c7a52-8f0e-4d8b-9a43-0f2b6f3f9d10", "name": "front desk"})
            },
            prepare: nothing,
            field: "name",
            value: || json!("main line"),
            invalid: || json!({"provider": "twilio"}),
            messages: &[
                "number must be a string",
                "twilioAccountSid must be a string",
            ],
        },
        // CreateSquadDTO / UpdateSquadDTO (members is required on update too)
        Case {
            kind: "squad",
            collection: "/squad",
            paginated: false,
            create: |ids| json!({"name": "front desk", "members": [{"assistantId": ids[0]}]}),
            prepare: || vec![("assistant", json!({"name": "receptionist"}))],
            field: "members",
            value: || json!([]),
            invalid: || json!({"members": [{"assistantId": 5, "bogus": true}]}),
            messages: &[
                "members.0.property bogus should not exist",
                "members.0.assistantId must be a string",
            ],
        },
        // CreateOpenAICredentialDTO (no `/credential` path in the document; its DTOs are there)
        Case {
            kind: "credential",
            collection: "/credential",
            paginated: false,
            create: |_| json!({"provider": "openai", "apiKey": "sk-test-1", "name": "openai"}),
            prepare: nothing,
            field: "name",
            value: || json!("openai-prod"),
            invalid: || json!({"provider": "openai"}),
            messages: &["apiKey must be a string"],
        },
        // CreateStructuredOutputDTO, listed as StructuredOutputPaginatedResponse
        Case {
            kind: "structured-output",
            collection: "/structured-output",
            paginated: true,
            create: |_| json!({"name": "outcome", "schema": {"type": "string"}}),
            prepare: nothing,
            field: "description",
            value: || json!("the call's outcome"),
            invalid: || json!({"name": ""}),
            messages: &[
                "name must be longer than or equal to 1 characters",
                "schema should not be empty",
            ],
        },
        // CreateEvalDTO, listed as EvalPaginatedResponse
        Case {
            kind: "eval",
            collection: "/eval",
            paginated: true,
            create: |_| json!({"type": "chat.mockConversation", "messages": [], "name": "greets"}),
            prepare: nothing,
            field: "name",
            value: || json!("greets politely"),
            invalid: || json!({"type": "chat", "messages": []}),
            messages: &["type must be one of the following values: chat.mockConversation"],
        },
        // CreateSimulationDTO
        Case {
            kind: "simulation",
            collection: "/eval/simulation",
            paginated: false,
            create: |ids| json!({"name": "refund", "scenarioId": ids[0], "personalityId": ids[1]}),
            prepare: || {
                vec![
                    (
                        "scenario",
                        json!({"name": "refund", "instructions": "Ask for a refund", "evaluations": []}),
                    ),
                    ("personality", json!({"name": "impatient", "assistant": {}})),
                ]
            },
            field: "name",
            value: || json!("refund, impatient"),
            invalid: || json!({"scenarioId": "nope", "personalityId": MISSING}),
            messages: &["scenarioId must be a UUID"],
        },
        // CreatePersonalityDTO
        Case {
            kind: "personality",
            collection: "/eval/simulation/personality",
            paginated: false,
            create: |_| json!({"name": "impatient", "assistant": {"model": {"provider": "openai"}}}),
            prepare: nothing,
            field: "name",
            value: || json!("very impatient"),
            invalid: || json!({"name": 5, "assistant": {}}),
            messages: &[
                "name must be a string",
                "name must be shorter than or equal to 80 characters",
            ],
        },
        // CreateScenarioDTO
        Case {
            kind: "scenario",
            collection: "/eval/simulation/scenario",
            paginated: false,
            create: |_| json!({"name": "refund", "instructions": "Ask for a refund", "evaluations": []}),
            prepare: nothing,
            field: "instructions",
            value: || json!("Ask twice for a refund"),
            invalid: || json!({"name": "refund"}),
            // A missing string also fails its length bound, as in class-validator.
            messages: &[
                "instructions must be a string",
                "instructions must be shorter than or equal to 10000 characters",
                "evaluations must be an array",
            ],
        },
        // CreateSimulationSuiteDTO
        Case {
            kind: "simulation-suite",
            collection: "/eval/simulation/suite",
            paginated: false,
            create: |ids| json!({"name": "nightly", "simulationIds": [ids[0]]}),
            prepare: || {
                vec![(
                    "simulation",
                    json!({"name": "refund", "scenarioId": MISSING, "personalityId": MISSING}),
                )]
            },
            field: "name",
            value: || json!("nightly-2"),
            invalid: || json!({"name": "nightly", "simulationIds": "all"}),
            messages: &["simulationIds must be an array"],
        },
    ]
}

#[test]
fn the_table_covers_every_kind_but_assistants() {
    let mut kinds: Vec<&str> = cases().iter().map(|c| c.kind).collect();
    kinds.insert(0, "assistant");
    assert_eq!(kinds, KIND_NAMES);
}

#[tokio::test]
async fn every_kind_answers_crud_and_errors_like_vapi() {
    let env = Env::new().await;
    for case in cases() {
        let c = case.collection;
        let ids: Vec<String> = (case.prepare)()
            .into_iter()
            .map(|(kind, body)| env.seed(kind, body))
            .collect();

        // 401: the exact body, on the list and on an item.
        for path in [c.to_owned(), format!("{c}/{MISSING}")] {
            let resp = env
                .http
                .get(env.url(&path))
                .bearer_auth("wrong")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(resp.text().await.unwrap(), INVALID_KEY_BODY, "{path}");
        }

        // The list in the documented shape (earlier cases may have seeded this kind).
        let (status, list) = env.send(Method::GET, c, None).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        let before = items(&list, case.paginated).len();
        if case.paginated {
            assert_eq!(list["metadata"]["totalItems"], before, "{c}");
            assert_eq!(list["metadata"]["currentPage"], 1, "{c}");
        }

        // Create: the body plus server fields.
        let body = (case.create)(&ids);
        let created = env.create_in(c, body.clone()).await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{c}: {created}");
        assert_eq!(created["orgId"], ORG, "{c}");
        let created_at = created["createdAt"].as_str().unwrap();
        assert!(is_ms_timestamp(created_at), "{c}: {created_at}");
        assert_eq!(created["createdAt"], created["updatedAt"], "{c}");
        for (k, v) in body.as_object().unwrap() {
            if case.kind == "credential" && k == "apiKey" {
                // Vapi never answers a credential's secret.
                assert!(created.get(k).is_none(), "{c}: {created}");
            } else {
                assert_eq!(&created[k], v, "{c}: {k}");
            }
        }

        // Get and list return the same object; other orgs do not see it.
        let item = format!("{c}/{id}");
        assert_eq!(
            env.send(Method::GET, &item, None).await,
            (StatusCode::OK, created.clone()),
            "{c}"
        );
        let (_, list) = env.send(Method::GET, c, None).await;
        let listed = items(&list, case.paginated);
        assert_eq!((listed.len(), &listed[0]), (before + 1, &created), "{c}");
        let (status, _) = env.send_as(OTHER_KEY, Method::GET, &item, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{c}");
        let (_, theirs) = env.send_as(OTHER_KEY, Method::GET, c, None).await;
        assert!(items(&theirs, case.paginated).is_empty(), "{c}");

        // PATCH replaces the one key and keeps the others.
        let value = (case.value)();
        let (status, patched) = env
            .send(
                Method::PATCH,
                &item,
                Some(json!({ (case.field): value.clone() })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{c}: {patched}");
        assert_eq!(patched[case.field], value, "{c}");
        assert_eq!(patched["id"], created["id"], "{c}");
        assert_eq!(patched["createdAt"], created["createdAt"], "{c}");
        assert!(
            patched["updatedAt"].as_str().unwrap() >= created_at,
            "{c}: {patched}"
        );

        // 400: class-validator's messages; nothing is stored.
        let (status, err) = env.send(Method::POST, c, Some((case.invalid)())).await;
        assert_eq!(
            (status, err),
            (StatusCode::BAD_REQUEST, bad(case.messages)),
            "{c}"
        );
        // 400 for an id that is not a UUID, 404 for one that is not there.
        let (status, err) = env.send(Method::GET, &format!("{c}/nope"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{c}");
        assert_eq!(
            err["message"], "Validation failed (uuid is expected)",
            "{c}"
        );
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            let patch = json!({ (case.field): (case.value)() });
            let (status, err) = env
                .send(method.clone(), &format!("{c}/{MISSING}"), Some(patch))
                .await;
            assert_eq!(
                (status, err),
                (StatusCode::NOT_FOUND, not_found("Not Found")),
                "{method} {c}"
            );
        }

        // DELETE answers the object, then it is gone.
        let (status, deleted) = env.send(Method::DELETE, &item, None).await;
        assert_eq!(
            (status, &deleted["id"]),
            (StatusCode::OK, &created["id"]),
            "{c}"
        );
        let (status, _) = env.send(Method::GET, &item, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{c}");

        // Every request was counted under its route template.
        let counters = env.sim.counters();
        assert_eq!(counters.total("POST", c), 2, "{c}");
        assert_eq!(counters.total("DELETE", &format!("{c}/{{id}}")), 2, "{c}");
    }
    assert_eq!(env.sim.counters().unknown_total(), 0);
}

// ---------------------------------------------------------------- tools

#[tokio::test]
async fn the_five_tool_types_validate_from_their_dtos() {
    let env = Env::new().await;
    let valid = [
        json!({"type": "function", "function": {"name": "get_weather"}, "server": {"url": "https://x.test/w"}}),
        json!({"type": "apiRequest", "method": "POST", "url": "https://x.test/orders", "name": "orders", "timeoutSeconds": 20}),
        json!({"type": "transferCall", "destinations": [{"type": "number", "number": "+14155550100"}]}),
        json!({"type": "endCall"}),
        json!({"type": "query", "knowledgeBases": [{"provider": "google", "name": "faq", "fileIds": []}]}),
    ];
    for body in valid {
        env.create_in("/tool", body).await;
    }
    let invalid = [
        (json!({}), None),
        (json!({"type": "webhook"}), None),
        (
            json!({"type": "apiRequest", "method": "FETCH", "url": 5, "timeoutSeconds": 301}),
            Some(vec![
                "method must be one of the following values: POST, GET, PUT, PATCH, DELETE",
                "timeoutSeconds must not be greater than 300",
                "url must be a string",
            ]),
        ),
        (
            json!({"type": "function", "function": {"name": "x".repeat(65)}, "server": {"url": "u", "headers": []}}),
            Some(vec![
                "server.headers must be an object",
                "function.name must be shorter than or equal to 64 characters",
            ]),
        ),
        (
            json!({"type": "transferCall", "destinations": {}}),
            Some(vec!["destinations must be an array"]),
        ),
        (
            json!({"type": "endCall", "function": {"name": "end"}}),
            Some(vec!["property function should not exist"]),
        ),
        (
            json!({"type": "query", "knowledgeBases": ["faq"]}),
            Some(vec![
                "each value in nested property knowledgeBases must be either object or array",
            ]),
        ),
    ];
    for (body, messages) in invalid {
        let (status, err) = env.send(Method::POST, "/tool", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        match messages {
            Some(m) => assert_eq!(err, bad(&m), "{body}"),
            // A missing or unknown `type` names every tool type the document has.
            None => {
                let msg = err["message"][0].as_str().unwrap();
                assert!(
                    msg.starts_with("type must be one of the following values: "),
                    "{msg}"
                );
                for t in ["apiRequest", "endCall", "function", "query", "transferCall"] {
                    assert!(msg.contains(t), "{msg}");
                }
            }
        }
    }
    assert_eq!(env.sim.resources("tool", ORG).unwrap().len(), 5);
}

#[tokio::test]
async fn a_tools_type_is_fixed_after_create_and_patch_is_shallow() {
    let env = Env::new().await;
    let tool = env
        .create_in(
            "/tool",
            json!({"type": "function", "async": true, "function": {"name": "lookup"},
                   "server": {"url": "https://old.test/t", "timeoutSeconds": 20}}),
        )
        .await;
    let item = format!("/tool/{}", tool["id"].as_str().unwrap());
    // Another type is refused by the stored type's update DTO; the same type may be sent.
    let (status, err) = env
        .send(Method::PATCH, &item, Some(json!({"type": "endCall"})))
        .await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            bad(&["type must be one of the following values: function"])
        )
    );
    // `server` is replaced wholesale: timeoutSeconds goes with the old object.
    let (status, patched) = env
        .send(
            Method::PATCH,
            &item,
            Some(json!({"type": "function", "server": {"url": "https://new.test/t"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["server"], json!({"url": "https://new.test/t"}));
    assert_eq!(patched["function"], json!({"name": "lookup"}));
    assert_eq!(patched["async"], true);
    // A bad nested field is refused with its dotted path, and nothing changes.
    let (status, err) = env
        .send(
            Method::PATCH,
            &item,
            Some(json!({"server": {"url": 1, "secret": "s"}})),
        )
        .await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            bad(&[
                "server.property secret should not exist",
                "server.url must be a string"
            ])
        )
    );
    assert_eq!(
        env.sim
            .resource("tool", tool["id"].as_str().unwrap())
            .unwrap()["server"]["url"],
        "https://new.test/t"
    );
}

#[tokio::test]
async fn tool_lists_page_like_assistants() {
    let env = Env::new().await;
    for (i, day) in ["2026-01-01", "2026-01-02", "2026-01-03"]
        .iter()
        .enumerate()
    {
        env.seed(
            "tool",
            json!({"type": "endCall", "n": i, "createdAt": format!("{day}T00:00:00.000Z")}),
        );
    }
    let n = |list: &Value| -> Vec<i64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| t["n"].as_i64().unwrap())
            .collect()
    };
    let (_, all) = env.send(Method::GET, "/tool", None).await;
    assert_eq!(n(&all), [2, 1, 0]);
    let (_, first) = env.send(Method::GET, "/tool?limit=2", None).await;
    assert_eq!(n(&first), [2, 1]);
    let (_, rest) = env
        .send(
            Method::GET,
            "/tool?limit=2&createdAtLt=2026-01-02T00:00:00.000Z",
            None,
        )
        .await;
    assert_eq!(n(&rest), [0]);
    let (status, err) = env.send(Method::GET, "/tool?limit=1001", None).await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            bad(&["limit must not be greater than 1000"])
        )
    );
}

#[tokio::test]
async fn pinned_tools_cannot_be_deleted() {
    let env = Env::new().await;
    let id = env.seed("tool", json!({"type": "endCall"}));
    assert!(env.sim.pin_resource("tool", &id, true));
    let (status, body) = env.send(Method::DELETE, &format!("/tool/{id}"), None).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CONFLICT,
            json!({"error": "tool_pinned", "message": "Tool is pinned and cannot be deleted. Unpin it first."})
        )
    );
    assert!(env.sim.pin_resource("tool", &id, false));
    let (status, _) = env.send(Method::DELETE, &format!("/tool/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    // Only tools (and assistants) can be pinned.
    let squad = env.seed("squad", json!({"members": []}));
    assert!(!env.sim.pin_resource("squad", &squad, true));
}

// ---------------------------------------------------------------- assistants and tools

#[tokio::test]
async fn assistants_reference_tools_by_uuid_and_keep_dangling_ids() {
    let env = Env::new().await;
    let tool = env.create_in("/tool", json!({"type": "endCall"})).await;
    let tool_id = tool["id"].as_str().unwrap();
    let model =
        |ids: Value| json!({"model": {"provider": "openai", "model": "gpt-4.1", "toolIds": ids}});

    // Not UUIDs: class validation, in the wording Vapi's GitOps notes quote.
    let (status, err) = env
        .send(
            Method::POST,
            "/assistant",
            Some(model(json!(["end-call-tool"]))),
        )
        .await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            bad(&["model.each value in toolIds must be a UUID"])
        )
    );
    // A UUID that names no tool is accepted: Vapi resolves toolIds when a call starts.
    let assistant = env
        .create_in("/assistant", model(json!([tool_id, MISSING])))
        .await;
    assert_eq!(assistant["model"]["toolIds"], json!([tool_id, MISSING]));

    // Deleting a tool an assistant references succeeds and leaves the assistant as it was.
    let (status, _) = env
        .send(Method::DELETE, &format!("/tool/{tool_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = env
        .send(
            Method::GET,
            &format!("/assistant/{}", assistant["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(after, assistant);
}

// ---------------------------------------------------------------- phone numbers

#[tokio::test]
async fn phone_numbers_take_each_providers_create_shape() {
    let env = Env::new().await;
    let cred = "6f1c7a52-8f0e-4d8b-9a43-0f2b6f3f9d10";
    let shapes = [
        json!({"provider": "vapi", "numberDesiredAreaCode": "415", "name": "bought"}),
        json!({"provider": "twilio", "number": "+14155550101", "twilioAccountSid": "AC1", "twilioAuthToken": "t"}),
        json!({"provider": "vonage", "number": "+14155550102", "credentialId": cred}),
        json!({"provider": "telnyx", "number": "+14155550103", "credentialId": cred}),
        json!({"provider": "byo-phone-number", "number": "+14155550104", "credentialId": cred, "numberE164CheckEnabled": false}),
    ];
    for body in shapes {
        let n = env.create_in("/phone-number", body.clone()).await;
        assert_eq!(n["provider"], body["provider"]);
        assert_eq!(n["status"], "active", "{n}");
        assert!(n["number"].as_str().unwrap().starts_with("+1415"), "{n}");
    }
    // A Vapi number is bought, not brought: `number` is the server's.
    let (status, err) = env
        .send(
            Method::POST,
            "/phone-number",
            Some(json!({"provider": "vapi", "number": "+14155550199"})),
        )
        .await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            bad(&["property number should not exist"])
        )
    );
    let (status, err) = env
        .send(
            Method::POST,
            "/phone-number",
            Some(json!({"provider": "sip"})),
        )
        .await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            bad(&[
                "provider must be one of the following values: byo-phone-number, telnyx, twilio, vapi, vonage"
            ])
        )
    );
}

#[tokio::test]
async fn phone_numbers_bind_only_to_the_orgs_own_assistants_and_re_point() {
    let env = Env::new().await;
    let ours = env.create_in("/assistant", json!({"name": "day"})).await;
    let ours = ours["id"].as_str().unwrap();
    let night = env.create_in("/assistant", json!({"name": "night"})).await;
    let night = night["id"].as_str().unwrap();
    let (_, theirs) = env
        .send_as(
            OTHER_KEY,
            Method::POST,
            "/assistant",
            Some(json!({"name": "theirs"})),
        )
        .await;
    let theirs = theirs["id"].as_str().unwrap();

    // Numbers are bought by people: seeded out of band, bound to nothing.
    let number = env.sim.seed_phone_number(ORG, "+14155550123");
    assert_eq!(number["status"], "active");
    let item = format!("/phone-number/{}", number["id"].as_str().unwrap());

    for bad_id in [theirs, MISSING] {
        let (status, err) = env
            .send(Method::PATCH, &item, Some(json!({"assistantId": bad_id})))
            .await;
        assert_eq!(
            (status, err),
            (StatusCode::NOT_FOUND, not_found("Couldn't Find Assistant"))
        );
    }
    let (status, err) = env
        .send(Method::PATCH, &item, Some(json!({"squadId": MISSING})))
        .await;
    assert_eq!(
        (status, err),
        (StatusCode::NOT_FOUND, not_found("Couldn't Find Squad"))
    );
    let (status, created) = env
        .send(
            Method::POST,
            "/phone-number",
            Some(json!({"provider": "vapi", "assistantId": theirs})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{created}");

    // Bind, re-point, unbind with null.
    for (assistant, expect) in [
        (json!(ours), json!(ours)),
        (json!(night), json!(night)),
        (Value::Null, Value::Null),
    ] {
        let (status, n) = env
            .send(
                Method::PATCH,
                &item,
                Some(json!({"assistantId": assistant})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{n}");
        assert_eq!(n["assistantId"], expect);
        assert_eq!(n["number"], "+14155550123");
    }
    // The provider is fixed after create.
    let (status, err) = env
        .send(Method::PATCH, &item, Some(json!({"provider": "twilio"})))
        .await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            bad(&["provider must be one of the following values: vapi"])
        )
    );
    // A squad of the org can be bound as well.
    let squad = env
        .create_in("/squad", json!({"members": [{"assistantId": ours}]}))
        .await;
    let (status, n) = env
        .send(Method::PATCH, &item, Some(json!({"squadId": squad["id"]})))
        .await;
    assert_eq!((status, &n["squadId"]), (StatusCode::OK, &squad["id"]));
}

#[tokio::test]
async fn v2_phone_numbers_are_paginated() {
    let env = Env::new().await;
    for i in 0..5 {
        env.sim.seed_phone_number(ORG, &format!("+1415555010{i}"));
    }
    env.sim.seed_phone_number(OTHER_ORG, "+14155559999");
    let numbers = |v: &Value| -> Vec<String> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["number"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, page) = env
        .send(Method::GET, "/v2/phone-number?limit=2&page=2", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(numbers(&page), ["+14155550102", "+14155550101"]);
    assert_eq!(
        page["metadata"],
        json!({"itemsPerPage": 2, "totalItems": 5, "currentPage": 2, "totalPages": 3,
               "hasNextPage": true, "sortOrder": "DESC"})
    );
    let (_, asc) = env
        .send(Method::GET, "/v2/phone-number?limit=2&sortOrder=ASC", None)
        .await;
    assert_eq!(numbers(&asc), ["+14155550100", "+14155550101"]);
    let (status, err) = env
        .send(Method::GET, "/v2/phone-number?page=0&sortOrder=up", None)
        .await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            bad(&[
                "page must not be less than 1",
                "sortOrder must be one of the following values: ASC, DESC"
            ])
        )
    );
    // The v1 list stays a bare array.
    let (_, v1) = env.send(Method::GET, "/phone-number", None).await;
    assert_eq!(v1.as_array().unwrap().len(), 5);
    let (status, _) = env
        .send(Method::POST, "/v2/phone-number", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- counters, faults, control

#[tokio::test]
async fn unknown_routes_are_counted_apart_with_ids_hidden() {
    let env = Env::new().await;
    let (status, body) = env
        .send(Method::GET, &format!("/workflow/{MISSING}"), None)
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            not_found(&format!("Cannot GET /workflow/{MISSING}"))
        )
    );
    env.send(
        Method::GET,
        "/workflow/3f0b7c1e-0000-4c2e-8b1f-2d6e5a7c9b10",
        None,
    )
    .await;
    env.send(Method::PUT, "/tool", Some(json!({}))).await;
    let c = env.sim.counters();
    assert!(c.requests.is_empty(), "{:?}", c.requests);
    let rows: Vec<(&str, &str, u16, u64)> = c
        .unknown_routes
        .iter()
        .map(|r| (r.method.as_str(), r.route.as_str(), r.status, r.count))
        .collect();
    assert_eq!(
        rows,
        [("GET", "/workflow/{id}", 404, 2), ("PUT", "/tool", 404, 1)]
    );
    // Over HTTP too.
    let v: Value = env
        .http
        .get(env.url("/_sim/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["unknownRoutes"][0]["route"], "/workflow/{id}");
    env.sim.reset_counters();
    assert_eq!(env.sim.counters().unknown_total(), 0);
}

#[tokio::test]
async fn counters_tell_a_list_from_a_get_per_tool() {
    let env = Env::new().await;
    for _ in 0..3 {
        env.seed("tool", json!({"type": "endCall"}));
    }
    env.sim.reset_counters();
    env.send(Method::GET, "/tool?limit=1000", None).await;
    let c = env.sim.counters();
    assert_eq!(c.total("GET", "/tool"), 1);
    assert_eq!(c.total("GET", "/tool/{id}"), 0);
    assert_eq!(c.total_under("GET", "/tool"), 1);
    assert_eq!(c.writes(), 0);
}

#[tokio::test]
async fn fault_rules_match_any_route() {
    let env = Env::new().await;
    env.sim.inject(Fault {
        method: Some("POST".into()),
        route: Some("/phone-number".into()),
        mode: FaultMode::CommitThenFail,
        status: Some(503),
        retry_after: None,
        count: Some(1),
    });
    env.sim.inject(Fault {
        method: None,
        route: Some("/eval/simulation/scenario/{id}".into()),
        mode: FaultMode::Respond,
        status: Some(500),
        retry_after: None,
        count: Some(1),
    });
    // The tool route is untouched by either rule.
    env.create_in("/tool", json!({"type": "endCall"})).await;
    let (status, _) = env
        .send(
            Method::POST,
            "/phone-number",
            Some(json!({"provider": "vapi"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(env.sim.resources("phone-number", ORG).unwrap().len(), 1);
    let (status, body) = env
        .send(
            Method::GET,
            &format!("/eval/simulation/scenario/{MISSING}"),
            None,
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "Internal Server Error", "error": "Internal Server Error", "statusCode": 500})
        )
    );
    assert!(env.sim.faults().is_empty());
    let c = env.sim.counters();
    assert_eq!(c.total("POST", "/phone-number"), 1);
    assert_eq!(c.with_status(503), 1);
}

#[tokio::test]
async fn the_control_api_lists_seeds_edits_and_deletes_any_kind() {
    let env = Env::new().await;
    let ctl = |m: Method, p: &str| env.http.request(m, env.url(&format!("/_sim{p}")));
    let kinds: Value = ctl(Method::GET, "/resources")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kinds["kinds"], json!(KIND_NAMES));

    for kind in KIND_NAMES {
        let resp = ctl(Method::POST, &format!("/resources/{kind}"))
            .json(&json!({"orgId": ORG, "body": {"name": format!("{kind}-1"), "createdAt": "2025-01-01T00:00:00.000Z"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{kind}");
        let made: Value = resp.json().await.unwrap();
        assert_eq!(made["createdAt"], "2025-01-01T00:00:00.000Z", "{kind}");
        let id = made["id"].as_str().unwrap();

        let listed: Value = ctl(Method::GET, &format!("/resources/{kind}?orgId={ORG}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed, json!([made]), "{kind}");
        let edited: Value = ctl(Method::PATCH, &format!("/resources/{kind}/{id}"))
            .json(&json!({"name": "edited"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(edited["name"], "edited", "{kind}");
        assert_eq!(
            env.sim.resource(kind, id).unwrap()["name"],
            "edited",
            "{kind}"
        );
        let resp = ctl(Method::DELETE, &format!("/resources/{kind}/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{kind}");
        assert!(env.sim.resource(kind, id).is_none(), "{kind}");
    }
    let resp = ctl(Method::GET, "/resources/workflow")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Seeding a phone number over HTTP gives it the server's defaults.
    let n: Value = ctl(Method::POST, "/resources/phone-number")
        .json(&json!({"orgId": ORG, "body": {"provider": "vapi", "number": "+14155550123"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (n["status"].as_str(), n["number"].as_str()),
        (Some("active"), Some("+14155550123"))
    );
    // Control requests are never counted.
    assert!(env.sim.counters().requests.is_empty());
}
