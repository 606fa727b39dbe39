//! Property tables extracted from Vapi's OpenAPI document (`components.schemas`, spec commit 0494c2f),
//! plus the voice catalogue facts from Vapi's API documentation.
//!
//! Pure data (and one pure predicate), shared by the simulator and the reconcile core, so that both
//! agree on what Vapi accepts; nothing here does I/O. Generated once from `openapi.json` and committed
//! as data: `CreateAssistantDTO`'s property set is the top-level whitelist (UpdateAssistantDTO has the
//! identical set), and each voice schema named in `CreateAssistantDTO.voice.oneOf` gives a per-provider
//! whitelist, its required properties and the numeric bounds of its number-typed properties. Order is
//! the spec's declaration order, which is also the order class-validator reports errors in.

/// `CreateAssistantDTO` / `UpdateAssistantDTO` properties, in spec order.
pub const ASSISTANT_PROPERTIES: &[&str] = &[
    "transcriber",
    "model",
    "voice",
    "firstMessage",
    "firstMessageInterruptionsEnabled",
    "firstMessageMode",
    "voicemailDetection",
    "clientMessages",
    "serverMessages",
    "maxDurationSeconds",
    "backgroundSound",
    "modelOutputInMessagesEnabled",
    "transportConfigurations",
    "observabilityPlan",
    "credentials",
    "hooks",
    "name",
    "voicemailMessage",
    "endCallMessage",
    "endCallPhrases",
    "compliancePlan",
    "metadata",
    "backgroundSpeechDenoisingPlan",
    "analysisPlan",
    "artifactPlan",
    "startSpeakingPlan",
    "stopSpeakingPlan",
    "monitorPlan",
    "credentialIds",
    "server",
    "keypadInputPlan",
];

/// A number-typed property with optional inclusive bounds.
pub struct NumberRule {
    pub name: &'static str,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One voice schema: discriminator value, whitelist, required properties, numeric rules, boolean properties.
pub struct VoiceSchema {
    pub provider: &'static str,
    pub properties: &'static [&'static str],
    pub required: &'static [&'static str],
    pub numbers: &'static [NumberRule],
    pub booleans: &'static [&'static str],
}

/// Voice schemas in `CreateAssistantDTO.voice.oneOf` order (the 20 voice providers).
pub const VOICE_SCHEMAS: &[VoiceSchema] = &[
    // AzureVoice
    VoiceSchema {
        provider: "azure",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "chunkPlan",
            "speed",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[NumberRule {
            name: "speed",
            min: Some(0.5),
            max: Some(2.0),
        }],
        booleans: &["cachingEnabled"],
    },
    // CartesiaVoice
    VoiceSchema {
        provider: "cartesia",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "language",
            "experimentalControls",
            "generationConfig",
            "pronunciationDictId",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[],
        booleans: &["cachingEnabled"],
    },
    // CustomVoice
    VoiceSchema {
        provider: "custom-voice",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "chunkPlan",
            "server",
            "fallbackPlan",
        ],
        required: &["provider", "server"],
        numbers: &[],
        booleans: &["cachingEnabled"],
    },
    // DeepgramVoice
    VoiceSchema {
        provider: "deepgram",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "mipOptOut",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[],
        booleans: &["cachingEnabled", "mipOptOut"],
    },
    // ElevenLabsVoice
    VoiceSchema {
        provider: "11labs",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "stability",
            "similarityBoost",
            "style",
            "useSpeakerBoost",
            "speed",
            "optimizeStreamingLatency",
            "enableSsmlParsing",
            "autoMode",
            "model",
            "language",
            "chunkPlan",
            "pronunciationDictionaryLocators",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[
            NumberRule {
                name: "stability",
                min: Some(0.0),
                max: Some(1.0),
            },
            NumberRule {
                name: "similarityBoost",
                min: Some(0.0),
                max: Some(1.0),
            },
            NumberRule {
                name: "style",
                min: Some(0.0),
                max: Some(1.0),
            },
            NumberRule {
                name: "speed",
                min: Some(0.7),
                max: Some(1.2),
            },
            NumberRule {
                name: "optimizeStreamingLatency",
                min: Some(0.0),
                max: Some(4.0),
            },
        ],
        booleans: &[
            "cachingEnabled",
            "useSpeakerBoost",
            "enableSsmlParsing",
            "autoMode",
        ],
    },
    // HumeVoice
    VoiceSchema {
        provider: "hume",
        properties: &[
            "cachingEnabled",
            "provider",
            "model",
            "voiceId",
            "isCustomHumeVoice",
            "chunkPlan",
            "description",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[],
        booleans: &["cachingEnabled", "isCustomHumeVoice"],
    },
    // LMNTVoice
    VoiceSchema {
        provider: "lmnt",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "speed",
            "language",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[NumberRule {
            name: "speed",
            min: Some(0.25),
            max: Some(2.0),
        }],
        booleans: &["cachingEnabled"],
    },
    // NeuphonicVoice
    VoiceSchema {
        provider: "neuphonic",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "language",
            "speed",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId", "language"],
        numbers: &[NumberRule {
            name: "speed",
            min: Some(0.25),
            max: Some(2.0),
        }],
        booleans: &["cachingEnabled"],
    },
    // OpenAIVoice
    VoiceSchema {
        provider: "openai",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "instructions",
            "speed",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[NumberRule {
            name: "speed",
            min: Some(0.25),
            max: Some(4.0),
        }],
        booleans: &["cachingEnabled"],
    },
    // PlayHTVoice
    VoiceSchema {
        provider: "playht",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "speed",
            "temperature",
            "emotion",
            "voiceGuidance",
            "styleGuidance",
            "textGuidance",
            "model",
            "language",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[
            NumberRule {
                name: "speed",
                min: Some(0.1),
                max: Some(5.0),
            },
            NumberRule {
                name: "temperature",
                min: Some(0.1),
                max: Some(2.0),
            },
            NumberRule {
                name: "voiceGuidance",
                min: Some(1.0),
                max: Some(6.0),
            },
            NumberRule {
                name: "styleGuidance",
                min: Some(1.0),
                max: Some(30.0),
            },
            NumberRule {
                name: "textGuidance",
                min: Some(1.0),
                max: Some(2.0),
            },
        ],
        booleans: &["cachingEnabled"],
    },
    // WellSaidVoice
    VoiceSchema {
        provider: "wellsaid",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "enableSsml",
            "libraryIds",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[],
        booleans: &["cachingEnabled", "enableSsml"],
    },
    // RimeAIVoice
    VoiceSchema {
        provider: "rime-ai",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "speed",
            "pauseBetweenBrackets",
            "phonemizeBetweenBrackets",
            "reduceLatency",
            "inlineSpeedAlpha",
            "language",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[NumberRule {
            name: "speed",
            min: Some(0.1),
            max: None,
        }],
        booleans: &[
            "cachingEnabled",
            "pauseBetweenBrackets",
            "phonemizeBetweenBrackets",
            "reduceLatency",
        ],
    },
    // SmallestAIVoice
    VoiceSchema {
        provider: "smallest-ai",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "speed",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[NumberRule {
            name: "speed",
            min: None,
            max: None,
        }],
        booleans: &["cachingEnabled"],
    },
    // TavusVoice
    VoiceSchema {
        provider: "tavus",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "chunkPlan",
            "personaId",
            "callbackUrl",
            "conversationName",
            "conversationalContext",
            "customGreeting",
            "properties",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[],
        booleans: &["cachingEnabled"],
    },
    // VapiVoice
    VoiceSchema {
        provider: "vapi",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "version",
            "speed",
            "language",
            "pronunciationDictionary",
            "chunkPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[NumberRule {
            name: "speed",
            min: Some(0.25),
            max: Some(2.0),
        }],
        booleans: &["cachingEnabled"],
    },
    // SesameVoice
    VoiceSchema {
        provider: "sesame",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId", "model"],
        numbers: &[],
        booleans: &["cachingEnabled"],
    },
    // InworldVoice
    VoiceSchema {
        provider: "inworld",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "languageCode",
            "temperature",
            "speakingRate",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[
            NumberRule {
                name: "temperature",
                min: Some(0.1),
                max: Some(2.0),
            },
            NumberRule {
                name: "speakingRate",
                min: Some(0.5),
                max: Some(1.5),
            },
        ],
        booleans: &["cachingEnabled"],
    },
    // MinimaxVoice
    VoiceSchema {
        provider: "minimax",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "model",
            "emotion",
            "subtitleType",
            "pitch",
            "speed",
            "volume",
            "region",
            "languageBoost",
            "textNormalizationEnabled",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[
            NumberRule {
                name: "pitch",
                min: Some(-12.0),
                max: Some(12.0),
            },
            NumberRule {
                name: "speed",
                min: Some(0.5),
                max: Some(2.0),
            },
            NumberRule {
                name: "volume",
                min: Some(0.5),
                max: Some(2.0),
            },
        ],
        booleans: &["cachingEnabled", "textNormalizationEnabled"],
    },
    // XaiVoice
    VoiceSchema {
        provider: "xai",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "language",
            "speed",
            "chunkPlan",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[NumberRule {
            name: "speed",
            min: Some(0.7),
            max: Some(1.5),
        }],
        booleans: &["cachingEnabled"],
    },
    // MicrosoftVoice
    VoiceSchema {
        provider: "microsoft",
        properties: &[
            "cachingEnabled",
            "provider",
            "voiceId",
            "style",
            "styleDegree",
            "role",
            "chunkPlan",
            "speed",
            "fallbackPlan",
        ],
        required: &["provider", "voiceId"],
        numbers: &[
            NumberRule {
                name: "styleDegree",
                min: Some(0.01),
                max: Some(2.0),
            },
            NumberRule {
                name: "speed",
                min: Some(0.5),
                max: Some(2.0),
            },
        ],
        booleans: &["cachingEnabled"],
    },
];

/// `model.provider` discriminators (`CreateAssistantDTO.model.oneOf` order).
pub const MODEL_PROVIDERS: &[&str] = &[
    "anthropic",
    "anthropic-bedrock",
    "anyscale",
    "cerebras",
    "custom-llm",
    "deepinfra",
    "deep-seek",
    "google",
    "groq",
    "inflection-ai",
    "minimax",
    "openai",
    "openrouter",
    "perplexity-ai",
    "together-ai",
    "xai",
    "vapi",
];

/// `CreateAssistantDTO.clientMessages` item enum, in spec order.
pub const CLIENT_MESSAGES: &[&str] = &[
    "conversation-update",
    "assistant.speechStarted",
    "function-call",
    "function-call-result",
    "hang",
    "language-changed",
    "metadata",
    "model-output",
    "speech-update",
    "status-update",
    "transcript",
    "tool-calls",
    "tool-calls-result",
    "tool.completed",
    "transfer-update",
    "user-interrupted",
    "voice-input",
    "workflow.node.started",
    "assistant.started",
];

/// `CreateAssistantDTO.serverMessages` item enum, in spec order.
pub const SERVER_MESSAGES: &[&str] = &[
    "assistant.started",
    "assistant.speechStarted",
    "conversation-update",
    "end-of-call-report",
    "function-call",
    "hang",
    "language-changed",
    "language-change-detected",
    "model-output",
    "phone-call-control",
    "speech-update",
    "status-update",
    "transcript",
    "transcript[transcriptType=\"final\"]",
    "tool-calls",
    "transfer-destination-request",
    "handoff-destination-request",
    "transfer-update",
    "user-interrupted",
    "voice-input",
    "chat.created",
    "chat.deleted",
    "session.created",
    "session.updated",
    "session.deleted",
    "call.deleted",
    "call.delete.failed",
    "call.artifact.upload",
];

/// Voice providers whose `voiceId` is a closed enum in the spec (no free-string alternative), with the
/// enum in spec order (deduplicated: the spec repeats some Deepgram names).
pub const VOICE_ID_ENUMS: &[(&str, &[&str])] = &[
    (
        "deepgram",
        &[
            "asteria",
            "luna",
            "stella",
            "athena",
            "hera",
            "orion",
            "arcas",
            "perseus",
            "angus",
            "orpheus",
            "helios",
            "zeus",
            "thalia",
            "andromeda",
            "helena",
            "apollo",
            "aries",
            "amalthea",
            "atlas",
            "aurora",
            "callista",
            "cora",
            "cordelia",
            "delia",
            "draco",
            "electra",
            "harmonia",
            "hermes",
            "hyperion",
            "iris",
            "janus",
            "juno",
            "jupiter",
            "mars",
            "minerva",
            "neptune",
            "odysseus",
            "ophelia",
            "pandora",
            "phoebe",
            "pluto",
            "saturn",
            "selene",
            "theia",
            "vesta",
            "celeste",
            "estrella",
            "nestor",
            "sirio",
            "carina",
            "alvaro",
            "diana",
            "aquila",
            "selena",
            "javier",
            "viktoria",
            "kara",
            "fabian",
            "julius",
            "lara",
            "elara",
            "aurelia",
        ],
    ),
    (
        "inworld",
        &[
            "Alex",
            "Ashley",
            "Craig",
            "Deborah",
            "Dennis",
            "Edward",
            "Elizabeth",
            "Hades",
            "Julia",
            "Pixie",
            "Mark",
            "Olivia",
            "Priya",
            "Ronald",
            "Sarah",
            "Shaun",
            "Theodore",
            "Timothy",
            "Wendy",
            "Dominus",
            "Hana",
            "Clive",
            "Carter",
            "Blake",
            "Luna",
            "Yichen",
            "Xiaoyin",
            "Xinyi",
            "Jing",
            "Erik",
            "Katrien",
            "Lennart",
            "Lore",
            "Alain",
            "Hélène",
            "Mathieu",
            "Étienne",
            "Johanna",
            "Josef",
            "Gianni",
            "Orietta",
            "Asuka",
            "Satoshi",
            "Hyunwoo",
            "Minji",
            "Seojun",
            "Yoona",
            "Szymon",
            "Wojciech",
            "Heitor",
            "Maitê",
            "Diego",
            "Lupita",
            "Miguel",
            "Rafael",
            "Svetlana",
            "Elena",
            "Dmitry",
            "Nikolai",
            "Riya",
            "Manoj",
            "Yael",
            "Oren",
            "Nour",
            "Omar",
        ],
    ),
    ("xai", &["eve", "ara", "rex", "sal", "leo"]),
    (
        "microsoft",
        &[
            "de-DE-Klaus:MAI-Voice-2",
            "de-DE-Mia:MAI-Voice-2",
            "en-AU-Lisa:MAI-Voice-2",
            "en-US-Ethan:MAI-Voice-2",
            "en-US-Grant:MAI-Voice-2",
            "en-US-Harper:MAI-Voice-2",
            "en-US-Iris:MAI-Voice-2",
            "en-US-Jasper:MAI-Voice-2",
            "en-US-Olivia:MAI-Voice-2",
            "es-ES-Marta:MAI-Voice-2",
            "es-MX-Alejo:MAI-Voice-2",
            "es-MX-Valeria:MAI-Voice-2",
            "fr-FR-Marc:MAI-Voice-2",
            "fr-FR-Soleil:MAI-Voice-2",
            "hi-IN-Arjun:MAI-Voice-2",
            "hi-IN-Dhruv:MAI-Voice-2",
            "hi-IN-Kavya:MAI-Voice-2",
            "hi-IN-Priya:MAI-Voice-2",
            "hu-HU-Bence:MAI-Voice-2",
            "hu-HU-Levente:MAI-Voice-2",
            "hu-HU-Lilla:MAI-Voice-2",
            "hu-HU-Réka:MAI-Voice-2",
            "it-IT-Luca:MAI-Voice-2",
            "it-IT-Rosa:MAI-Voice-2",
            "ko-KR-Hana:MAI-Voice-2",
            "ko-KR-Junho:MAI-Voice-2",
            "nl-NL-Fleur:MAI-Voice-2",
            "nl-NL-Sander:MAI-Voice-2",
            "pt-BR-Caio:MAI-Voice-2",
            "pt-BR-Luana:MAI-Voice-2",
            "pt-BR-Pedro:MAI-Voice-2",
            "pt-BR-Rafael:MAI-Voice-2",
            "pt-PT-Rui:MAI-Voice-2",
            "ro-RO-Andrei:MAI-Voice-2",
            "ro-RO-Elena:MAI-Voice-2",
            "ro-RO-Ioana:MAI-Voice-2",
            "ro-RO-Radu:MAI-Voice-2",
            "ru-RU-Lev:MAI-Voice-2",
            "ru-RU-Masha:MAI-Voice-2",
            "th-TH-Krit:MAI-Voice-2",
            "th-TH-Nattapong:MAI-Voice-2",
            "tr-TR-Aydin:MAI-Voice-2",
            "tr-TR-Elif:MAI-Voice-2",
            "zh-CN-Bo:MAI-Voice-2",
            "zh-CN-Lan:MAI-Voice-2",
            "zh-CN-Mei:MAI-Voice-2",
        ],
    ),
];

/// `transcriber.provider` discriminators (`CreateAssistantDTO.transcriber.oneOf` order).
pub const TRANSCRIBER_PROVIDERS: &[&str] = &[
    "assembly-ai",
    "azure",
    "custom-transcriber",
    "deepgram",
    "11labs",
    "gladia",
    "google",
    "speechmatics",
    "talkscriber",
    "openai",
    "cartesia",
    "soniox",
    "xai",
    "vapi",
];

/// `Server` properties (the `server` webhook target), in spec order. `secret` was removed on 2025-05-20.
pub const SERVER_PROPERTIES: &[&str] = &[
    "timeoutSeconds",
    "credentialId",
    "staticIpAddressesEnabled",
    "encryptedPaths",
    "url",
    "headers",
    "backoffPlan",
];

/// `OpenAIMessage.role` enum (`model.messages[].role`), in spec order.
pub const MESSAGE_ROLES: &[&str] = &["assistant", "function", "user", "system", "tool"];

/// `CreateAssistantDTO.firstMessageMode` enum, in spec order.
pub const FIRST_MESSAGE_MODES: &[&str] = &[
    "assistant-speaks-first",
    "assistant-speaks-first-with-model-generated-message",
    "assistant-waits-for-user",
];

/// The Vapi voice catalogue as of the 2026-07-30 spec, in spec order. The server prints
/// the enum in this order in its `must be one of the following values` message. It still holds the
/// retired voices ([`LEGACY_VAPI_VOICES`]): they stayed in the enum and a business rule refuses them.
pub const DEFAULT_VAPI_VOICES: &[&str] = &[
    "Clara", "Godfrey", "Elliot", "Savannah", "Nico", "Kai", "Emma", "Sagar", "Neil", "Layla",
    "Sid", "Gustavo", "Kylie", "Rohan", "Lily", "Hana", "Neha", "Cole", "Harry", "Paige",
    "Spencer", "Naina", "Leah", "Tara", "Jess", "Leo", "Dan", "Mia", "Zac", "Zoe",
];

/// Vapi voices retired on 2026-03-01. They stayed in the schema enum, so a business rule rejects them.
pub const LEGACY_VAPI_VOICES: &[&str] = &[
    "Spencer", "Neha", "Harry", "Cole", "Paige", "Hana", "Lily", "Kylie",
];

/// Azure presets accepted besides full short names (`AzureVoice.voiceId` preset enum). Lowercase only.
pub const AZURE_PRESETS: &[&str] = &["andrew", "brian", "emma"];

/// The voice schema of one provider, if Vapi knows the provider.
pub fn voice_schema(provider: &str) -> Option<&'static VoiceSchema> {
    VOICE_SCHEMAS.iter().find(|s| s.provider == provider)
}

/// `^[a-z]{2,3}-[A-Z]{2}(-[A-Za-z]+)?-[A-Za-z0-9]+Neural$`, e.g. `en-US-JennyNeural`,
/// `en-US-AvaMultilingualNeural`, `zh-CN-henan-YundengNeural`: what Azure's voice lookup accepts
/// besides the presets (`jenny` is neither and fails with `Couldn't Find Azure Voice`).
pub fn is_azure_short_name(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    let (lang, region, variant, name) = match parts.as_slice() {
        [l, r, n] => (*l, *r, None, *n),
        [l, r, v, n] => (*l, *r, Some(*v), *n),
        _ => return false,
    };
    (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && region.len() == 2
        && region.bytes().all(|b| b.is_ascii_uppercase())
        && variant.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphabetic()))
        && name
            .strip_suffix("Neural")
            .is_some_and(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_alphanumeric()))
}
