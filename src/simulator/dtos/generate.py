#!/usr/bin/env python3
"""Extract the request DTOs the simulator validates from Vapi's OpenAPI document.

Usage: python3 src/simulator/dtos/generate.py /work/shared/vapi/openapi.json > src/simulator/dtos/dtos.json

The output is data, committed next to this script and compiled into the simulator with
`include_str!`. For every DTO it keeps the property order (class-validator reports in declaration
order), the required list, and one rule per property:

  {"t":"str", "enum":[..], "min":n, "max":n, "uuid":true}   @IsString / @IsIn / @Length / @IsUUID
  {"t":"num", "min":x, "max":x}                               @IsNumber / @Min / @Max
  {"t":"bool"}                                                @IsBoolean
  {"t":"obj"}                                                 @IsObject (free-form)
  {"t":"nested", "ref":"Server"}                              @ValidateNested (ref only when kept)
  {"t":"arr", "items":{...}}                                  @IsArray + each
  {"t":"any"}                                                 a oneOf without a type: passes through

`kinds` lists, per resource, the create/update DTO of each discriminator value.
"""
import json
import sys

spec = json.load(open(sys.argv[1]))
S = spec["components"]["schemas"]
P = spec["paths"]

# Nested DTOs validated in depth (the ones a reconciler writes); others only need to be objects.
DEEP = ["Server", "OpenAIFunction", "SquadMemberDTO"]


def ref_of(v):
    if "$ref" in v:
        return v["$ref"].split("/")[-1]
    if "allOf" in v and len(v["allOf"]) == 1 and "$ref" in v["allOf"][0]:
        return v["allOf"][0]["$ref"].split("/")[-1]
    return None


def rule(v):
    r = ref_of(v)
    if r is not None:
        out = {"t": "nested"}
        if r in DEEP:
            out["ref"] = r
        return out
    t = v.get("type")
    if t == "string":
        out = {"t": "str"}
        if "enum" in v:
            out["enum"] = v["enum"]
        if "minLength" in v:
            out["min"] = v["minLength"]
        if "maxLength" in v:
            out["max"] = v["maxLength"]
        if v.get("format") == "uuid":
            out["uuid"] = True
        return out
    if t in ("number", "integer"):
        out = {"t": "num"}
        if "minimum" in v:
            out["min"] = v["minimum"]
        if "maximum" in v:
            out["max"] = v["maximum"]
        return out
    if t == "boolean":
        return {"t": "bool"}
    if t == "object":
        return {"t": "obj"}
    if t == "array":
        return {"t": "arr", "items": rule(v.get("items", {}))}
    return {"t": "any"}


def dto(name):
    s = S[name]
    return {
        "required": s.get("required", []),
        "props": [[k, rule(v)] for k, v in s.get("properties", {}).items()],
    }


def body(path, method):
    return P[path][method]["requestBody"]["content"]["application/json"]["schema"]


def by_discriminator(schema, prop):
    """discriminator value -> DTO name, in oneOf order (the mapping misses some members)."""
    out = {}
    for alt in schema["oneOf"]:
        name = alt["$ref"].split("/")[-1]
        enum = S[name]["properties"][prop].get("enum", [])
        if enum:
            out[enum[0]] = name
    return out


kinds = {}
for kind, coll, disc in [("tool", "/tool", "type"), ("phone-number", "/phone-number", "provider")]:
    create = by_discriminator(body(coll, "post"), disc)
    update = by_discriminator(body(coll + "/{id}", "patch"), disc)
    kinds[kind] = {"discriminator": disc, "create": create, "update": update}

# `/credential` is not in the document's paths, but its DTOs are in `components.schemas`.
def credential_dtos(prefix):
    out = {}
    for name in sorted(S):
        if name.startswith(prefix) and name.endswith("CredentialDTO"):
            enum = S[name].get("properties", {}).get("provider", {}).get("enum", [])
            if enum and enum[0] not in out:
                out[enum[0]] = name
    return out


kinds["credential"] = {
    "discriminator": "provider",
    "create": credential_dtos("Create"),
    "update": credential_dtos("Update"),
}

plain = {
    "squad": "/squad",
    "structured-output": "/structured-output",
    "eval": "/eval",
    "simulation": "/eval/simulation",
    "personality": "/eval/simulation/personality",
    "scenario": "/eval/simulation/scenario",
    "simulation-suite": "/eval/simulation/suite",
}
for kind, coll in plain.items():
    c = ref_of(body(coll, "post"))
    u = ref_of(body(coll + "/{id}", "patch"))
    kinds[kind] = {"create": {"": c}, "update": {"": u}}

names = set(DEEP)
for k in kinds.values():
    names.update(k["create"].values())
    names.update(k["update"].values())

out = {"kinds": kinds, "dtos": {n: dto(n) for n in sorted(names)}}
json.dump(out, sys.stdout, separators=(",", ":"), sort_keys=False)
print()
