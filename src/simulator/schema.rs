//! Property tables extracted from Vapi's OpenAPI document (`components.schemas`, spec commit 0494c2f).
//!
//! Generated once from `openapi.json` and committed as data: `CreateAssistantDTO`'s property set is the
//! top-level whitelist (UpdateAssistantDTO has the identical set), and each voice schema named in
//! `CreateAssistantDTO.voice.oneOf` gives a per-provider whitelist, its required properties and the
//! numeric bounds of its number-typed properties. Order is the spec's declaration order, which is also the
//! order class-validator reports errors in.

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
