// Transformation kinds (proto/floe/v1/transforms.proto): labels, blank steps for "Add step", a
// one-line summary of a step, and the JSON form (protobuf-es toJson/fromJson, the proto3 JSON
// mapping the SDK and grpcurl use too).
import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import {
  ChangeCase_Case,
  Comparison_Operator,
  ConditionSchema,
  ConvertType_Type,
  Filter_Mode,
  TransformationSchema,
  type Condition,
  type Transformation,
} from "@sdk/transforms_pb";

export type StepKind = NonNullable<Transformation["kind"]["case"]>;

export const STEP_KINDS: { kind: StepKind; snake: string; label: string; help: string }[] = [
  { kind: "renameField", snake: "rename_field", label: "Rename field", help: "Moves a field to a new name." },
  { kind: "removeFields", snake: "remove_fields", label: "Remove fields", help: "Drops fields from every record." },
  { kind: "addField", snake: "add_field", label: "Set field", help: "Sets a field to a constant." },
  { kind: "copyField", snake: "copy_field", label: "Copy field", help: "Copies a field's value to another name." },
  { kind: "filter", snake: "filter", label: "Filter records", help: "Keeps or drops the records matching a condition." },
  { kind: "parseTimestamp", snake: "parse_timestamp", label: "Parse timestamp", help: "Reads a string field as a time." },
  { kind: "convertType", snake: "convert_type", label: "Convert type", help: "Makes a field a string, number or boolean; values that do not convert fail the record." },
  { kind: "regexReplace", snake: "regex_replace", label: "Regex replace", help: "Replaces every match of an RE2 pattern (groups as \\1)." },
  { kind: "mask", snake: "mask", label: "Mask", help: "Masks every match of a pattern, keeping its last characters." },
  { kind: "hashField", snake: "hash_field", label: "Hash field", help: "Replaces a value with its salted SHA-256 (pseudonymise PII)." },
  { kind: "parseKeyValue", snake: "parse_key_value", label: "Parse key=value", help: "Splits key=value pairs of a field into fields." },
  { kind: "parseJson", snake: "parse_json", label: "Parse JSON", help: "Flattens a JSON object held in a string field into fields." },
  { kind: "changeCase", snake: "change_case", label: "Change case", help: "Lower- or upper-cases a field." },
  { kind: "sample", snake: "sample", label: "Sample", help: "Keeps one record in every N." },
  { kind: "route", snake: "route", label: "Route to dataset", help: "Sends matching records to another dataset of the tenant." },
];

export function kindInfo(kind: StepKind | undefined) {
  return STEP_KINDS.find((k) => k.kind === kind);
}

export function blankCondition(): Condition {
  return create(ConditionSchema, { kind: { case: "compare", value: { field: "", operator: Comparison_Operator.EQ, value: "" } } });
}

export function blankStep(kind: StepKind): Transformation {
  switch (kind) {
    case "addField":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "", value: "", overwrite: true } } });
    case "removeFields":
      return create(TransformationSchema, { kind: { case: kind, value: { fields: [] } } });
    case "renameField":
    case "copyField":
      return create(TransformationSchema, { kind: { case: kind, value: { from: "", to: "" } } });
    case "filter":
      return create(TransformationSchema, { kind: { case: kind, value: { mode: Filter_Mode.INCLUDE, condition: blankCondition() } } });
    case "regexReplace":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "", pattern: "", replacement: "" } } });
    case "mask":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "", pattern: "", maskChar: "*", keepLast: 4 } } });
    case "hashField":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "", target: "" } } });
    case "convertType":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "", type: ConvertType_Type.INT } } });
    case "parseTimestamp":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "", target: "", formats: ["rfc3339"], timezone: "" } } });
    case "parseKeyValue":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "message" } } });
    case "parseJson":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "message" } } });
    case "changeCase":
      return create(TransformationSchema, { kind: { case: kind, value: { field: "", case: ChangeCase_Case.LOWER } } });
    case "sample":
      return create(TransformationSchema, { kind: { case: kind, value: { rate: 10 } } });
    case "route":
      return create(TransformationSchema, { kind: { case: kind, value: { condition: blankCondition(), dataset: "" } } });
  }
}

const OPS: Record<Comparison_Operator, string> = {
  [Comparison_Operator.UNSPECIFIED]: "?",
  [Comparison_Operator.EQ]: "=",
  [Comparison_Operator.NE]: "≠",
  [Comparison_Operator.LT]: "<",
  [Comparison_Operator.LE]: "≤",
  [Comparison_Operator.GT]: ">",
  [Comparison_Operator.GE]: "≥",
  [Comparison_Operator.CONTAINS]: "contains",
  [Comparison_Operator.STARTS_WITH]: "starts with",
  [Comparison_Operator.ENDS_WITH]: "ends with",
};

export const OPERATORS: { op: Comparison_Operator; label: string }[] = [
  { op: Comparison_Operator.EQ, label: "equals" },
  { op: Comparison_Operator.NE, label: "does not equal" },
  { op: Comparison_Operator.LT, label: "less than" },
  { op: Comparison_Operator.LE, label: "at most" },
  { op: Comparison_Operator.GT, label: "greater than" },
  { op: Comparison_Operator.GE, label: "at least" },
  { op: Comparison_Operator.CONTAINS, label: "contains" },
  { op: Comparison_Operator.STARTS_WITH, label: "starts with" },
  { op: Comparison_Operator.ENDS_WITH, label: "ends with" },
];

export function conditionText(c: Condition | undefined, depth = 0): string {
  if (!c || depth > 4) return "…";
  const k = c.kind;
  switch (k.case) {
    case "compare":
      return `${k.value.field || "?"} ${OPS[k.value.operator]} ${JSON.stringify(k.value.value)}`;
    case "regex":
      return `${k.value.field || "?"} ~ /${k.value.pattern}/`;
    case "in":
      return `${k.value.field || "?"} in [${k.value.values.join(", ")}]`;
    case "exists":
      return `${k.value.field || "?"} exists`;
    case "all":
    case "any":
      return `(${k.value.conditions.map((x) => conditionText(x, depth + 1)).join(k.case === "all" ? " and " : " or ")})`;
    case "not":
      return `not ${conditionText(k.value, depth + 1)}`;
    default:
      return "(empty condition)";
  }
}

// "rename msg → message"
export function stepSummary(s: Transformation): string {
  const k = s.kind;
  let text: string;
  switch (k.case) {
    case "addField":
      text = `${k.value.field || "?"} = ${JSON.stringify(k.value.value)}`;
      break;
    case "removeFields":
      text = k.value.fields.join(", ") || "?";
      break;
    case "renameField":
    case "copyField":
      text = `${k.value.from || "?"} → ${k.value.to || "?"}`;
      break;
    case "filter":
      text = `${k.value.mode === Filter_Mode.EXCLUDE ? "drop" : "keep"} where ${conditionText(k.value.condition)}`;
      break;
    case "regexReplace":
      text = `${k.value.field || "?"}: /${k.value.pattern}/ → ${JSON.stringify(k.value.replacement)}`;
      break;
    case "mask":
      text = `${k.value.field || "?"}: /${k.value.pattern}/`;
      break;
    case "hashField":
      text = k.value.field + (k.value.target ? ` → ${k.value.target}` : "");
      break;
    case "convertType":
      text = `${k.value.field || "?"} to ${ConvertType_Type[k.value.type]?.toLowerCase() ?? "?"}`;
      break;
    case "parseTimestamp":
      text = `${k.value.field || "?"} (${k.value.formats.join(", ") || "?"})`;
      break;
    case "parseKeyValue":
    case "parseJson":
      text = k.value.field || "?";
      break;
    case "changeCase":
      text = `${k.value.field || "?"} to ${k.value.case === ChangeCase_Case.UPPER ? "upper" : "lower"} case`;
      break;
    case "sample":
      text = `1 in ${k.value.rate}`;
      break;
    case "route":
      text = `${conditionText(k.value.condition)} → ${k.value.dataset || "?"}`;
      break;
    default:
      text = "no kind chosen";
  }
  if (s.when && k.case !== "filter" && k.case !== "route") text += ` when ${conditionText(s.when)}`;
  return text;
}

export function stepToJson(s: Transformation): string {
  return JSON.stringify(toJson(TransformationSchema, s), null, 2);
}

// Parse a step's JSON form; throws an Error with a sentence when it is not one.
export function stepFromJson(text: string): Transformation {
  let raw: JsonValue;
  try {
    raw = JSON.parse(text) as JsonValue;
  } catch (e) {
    throw new Error(`Not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new Error("A step is a JSON object, e.g. {\"renameField\": {\"from\": \"a\", \"to\": \"b\"}}.");
  try {
    return fromJson(TransformationSchema, raw);
  } catch (e) {
    throw new Error(`Not a transformation step: ${e instanceof Error ? e.message : String(e)}`);
  }
}
