// One gRPC-web transport to the control plane that served this page, and a typed client per
// service (the same floe.v1 services the Python SDK and grpcurl use).
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { DescService } from "@bufbuild/protobuf";
import { DatasetService } from "@sdk/datasets_pb";
import { ExportService } from "@sdk/exports_pb";
import { FleetService } from "@sdk/fleet_pb";
import { HealthService } from "@sdk/health_pb";
import { KeyService } from "@sdk/keys_pb";
import { QueryService } from "@sdk/query_pb";
import { TenantService } from "@sdk/tenants_pb";
import { AuthService, UserService } from "@sdk/users_pb";
import { getSession, refreshed, setSession } from "./session";

// Renew the access token this long before it expires, so no call races its expiry.
const REFRESH_MARGIN_MS = 60_000;
let refreshing: Promise<void> | null = null;

const bare = createGrpcWebTransport({ baseUrl: window.location.origin });
const auth = createClient(AuthService, bare);

async function renew(): Promise<void> {
  const s = getSession();
  if (!s) return;
  try {
    const r = await auth.refreshToken({ refreshToken: s.refreshToken });
    setSession(refreshed(s, r));
  } catch (err) {
    const e = ConnectError.from(err);
    // The session ended (signed out elsewhere, expired, user disabled): back to sign-in.
    if (e.code === Code.Unauthenticated) setSession(null);
    throw err;
  }
}

function freshToken(): Promise<void> {
  const s = getSession();
  if (!s || s.accessExpires - Date.now() > REFRESH_MARGIN_MS) return Promise.resolve();
  refreshing ??= renew().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

const withToken: Interceptor = (next) => async (req) => {
  await freshToken();
  const s = getSession();
  if (s) req.header.set("Authorization", `Bearer ${s.accessToken}`);
  try {
    return await next(req);
  } catch (err) {
    const e = ConnectError.from(err);
    if (e.code === Code.Unauthenticated && s && getSession() === s) {
      // The token was refused (the server restarted with a new key, or it expired early):
      // renew once and retry; if renewal fails the session is cleared and the user signs in.
      await renew();
      const again = getSession();
      if (again) req.header.set("Authorization", `Bearer ${again.accessToken}`);
      return await next(req);
    }
    throw err;
  }
};

const transport = createGrpcWebTransport({ baseUrl: window.location.origin, interceptors: [withToken] });

function client<T extends DescService>(service: T): Client<T> {
  return createClient(service, transport);
}

export const api = {
  auth,
  users: client(UserService),
  tenants: client(TenantService),
  datasets: client(DatasetService),
  keys: client(KeyService),
  fleet: client(FleetService),
  health: client(HealthService),
  query: client(QueryService),
  exports: client(ExportService),
};
