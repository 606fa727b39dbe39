// Vapi's official TypeScript SDK against `vapi-reconciler simulate` (VAPI_BASE_URL, VAPI_TOKEN).
import { VapiClient, VapiError } from "@vapi-ai/server-sdk";

const client = new VapiClient({ token: process.env.VAPI_TOKEN, baseUrl: process.env.VAPI_BASE_URL });
const bad = new VapiClient({ token: "wrong", baseUrl: process.env.VAPI_BASE_URL });
let failures = 0;
const check = (name, ok, detail = "") => {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? ` — ${detail}` : ""}`);
  if (!ok) failures++;
};
const status = async (p) => { try { await p; return 200; } catch (e) { return e instanceof VapiError ? e.statusCode : String(e); } };

// Tools
const tool = await client.tools.create({ type: "function", function: { name: "lookup_order" }, server: { url: "https://hooks.example.com/a" } });
check("tools.create", tool.id && tool.type === "function" && tool.server.url === "https://hooks.example.com/a");
const patched = await client.tools.update({ id: tool.id, body: { type: "function", server: { url: "https://hooks.example.com/b" } } });
check("tools.update (type sent, same)", patched.server.url === "https://hooks.example.com/b");
check("tools.update (other type) -> 400", (await status(client.tools.update({ id: tool.id, body: { type: "endCall" } }))) === 400);
check("tools.get", (await client.tools.get({ id: tool.id })).id === tool.id);
check("tools.list", (await client.tools.list({ limit: 10 })).some((t) => t.id === tool.id));
check("tools.create bad -> 400", (await status(client.tools.create({ type: "function", async: "no" }))) === 400);

// Assistants referencing the tool
const asst = await client.assistants.create({ name: "sdk", model: { provider: "openai", model: "gpt-4.1", toolIds: [tool.id] } });
check("assistants.create with toolIds", asst.model.toolIds[0] === tool.id);

// Phone numbers
const num = await client.phoneNumbers.create({ provider: "byo-phone-number", number: "+14155550100", credentialId: "6f1c7a52-8f0e-4d8b-9a43-0f2b6f3f9d10", assistantId: asst.id });
check("phoneNumbers.create bound", num.assistantId === asst.id && num.status === "active");
const unbound = await client.phoneNumbers.update({ id: num.id, body: { provider: "byo-phone-number", assistantId: null } });
check("phoneNumbers.update unbind (null)", unbound.assistantId === null);
check("phoneNumbers.update missing assistant -> 404", (await status(client.phoneNumbers.update({ id: num.id, body: { assistantId: "3f0b7c1e-9a4d-4c2e-8b1f-2d6e5a7c9b10" } }))) === 404);
check("phoneNumbers.list", (await client.phoneNumbers.list()).length === 1);
check("phoneNumbers.get", (await client.phoneNumbers.get({ id: num.id })).number === "+14155550100");

// Squads
const squad = await client.squads.create({ name: "desk", members: [{ assistantId: asst.id }] });
check("squads.create", squad.members[0].assistantId === asst.id);
check("squads.list", (await client.squads.list()).length === 1);
check("squads.update", (await client.squads.update({ id: squad.id, name: "desk-2", members: squad.members })).name === "desk-2");
check("squads.delete", (await client.squads.delete({ id: squad.id })).id === squad.id);

// Structured outputs (paginated list)
const so = await client.structuredOutputs.structuredOutputControllerCreate({ name: "outcome", schema: { type: "string" } });
const sos = await client.structuredOutputs.structuredOutputControllerFindAll();
check("structuredOutputs list paginated", sos.results.length === 1 && sos.metadata.totalItems === 1);
check("structuredOutputs.get", (await client.structuredOutputs.structuredOutputControllerFindOne({ id: so.id })).name === "outcome");

// Evals (paginated list)
await client.eval.evalControllerCreate({ type: "chat.mockConversation", messages: [{ role: "user", content: "hi" }] });
check("eval list paginated", (await client.eval.evalControllerGetPaginated()).results.length === 1);

// Errors
check("401 on tools.list with a wrong key", (await status(bad.tools.list())) === 401);
check("404 on tools.get of a missing id", (await status(client.tools.get({ id: "3f0b7c1e-9a4d-4c2e-8b1f-2d6e5a7c9b10" }))) === 404);
check("tools.delete", (await client.tools.delete({ id: tool.id })).id === tool.id);
check("phoneNumbers.delete", (await client.phoneNumbers.delete({ id: num.id })).id === num.id);

console.log(failures === 0 ? "all SDK checks passed" : `${failures} SDK check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
