// The same id rules the control plane enforces (control_plane/core/names.py), checked before sending.
const ID_RE = /^[a-z][a-z0-9-]{0,61}[a-z0-9]$/;
const USER_ID_RE = /^[a-z0-9][a-z0-9._-]{0,61}[a-z0-9]$/;

export function idProblem(value: string, user = false): string | undefined {
  if (!value) return "is required";
  if (!(user ? USER_ID_RE : ID_RE).test(value)) {
    return user
      ? "Use 2-63 characters of lowercase letters, digits, '.', '_' and '-'"
      : "Use 2-63 characters of lowercase letters, digits and '-', starting with a letter and not ending with '-'";
  }
  return undefined;
}

export function portProblem(value: string): string | undefined {
  if (!value) return "is required";
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) return "must be a whole number from 1 to 65535";
  return undefined;
}
