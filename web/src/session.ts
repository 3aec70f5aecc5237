// The signed-in user's tokens. Kept in sessionStorage: they survive a reload of the tab and end
// with it; nothing is written to localStorage or cookies.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { LoginResponse, RefreshTokenResponse } from "@sdk/users_pb";
import { Role } from "@sdk/common_pb";

export interface Session {
  accessToken: string;
  accessExpires: number; // ms since the epoch
  refreshToken: string;
  user: string; // users/{id}
  displayName: string;
  role: Role;
  tenant: string; // tenants/{id} for tenant-bound users, "" for admins
}

const KEY = "floe.session";
type Listener = (s: Session | null) => void;
const listeners = new Set<Listener>();
let current: Session | null = load();

function load(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export function getSession(): Session | null {
  return current;
}

export function setSession(s: Session | null): void {
  current = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  for (const l of listeners) l(s);
}

export function onSession(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function sessionFromLogin(r: LoginResponse): Session {
  const user = r.user;
  return {
    accessToken: r.accessToken,
    accessExpires: r.accessTokenExpireTime ? timestampDate(r.accessTokenExpireTime).getTime() : Date.now() + 600_000,
    refreshToken: r.refreshToken,
    user: user?.name ?? "",
    displayName: user?.displayName || (user?.name ?? "").replace(/^users\//, ""),
    role: user?.role ?? Role.UNSPECIFIED,
    tenant: user?.tenant ?? "",
  };
}

export function refreshed(s: Session, r: RefreshTokenResponse): Session {
  return {
    ...s,
    accessToken: r.accessToken,
    accessExpires: r.accessTokenExpireTime ? timestampDate(r.accessTokenExpireTime).getTime() : Date.now() + 600_000,
  };
}

export function canWrite(s: Session | null): boolean {
  return !!s && (s.role === Role.ADMIN || s.role === Role.EDITOR);
}

export function isAdmin(s: Session | null): boolean {
  return !!s && s.role === Role.ADMIN;
}
