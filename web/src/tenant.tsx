// The tenant the pages are scoped to. Admins pick one (or all); a tenant-bound user has theirs.
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import type { Tenant } from "@sdk/tenants_pb";
import { api } from "./api";
import { leaf } from "./format";
import { getSession } from "./session";

export interface TenantScope {
  tenant: string; // tenant id ("acme"), or "" for every tenant
  setTenant: (id: string) => void;
  tenants: Tenant[];
  reloadTenants: () => void;
}

// Every tenant the caller may see, all pages of ListTenants.
export async function listTenants(): Promise<Tenant[]> {
  const all: Tenant[] = [];
  let pageToken = "";
  do {
    const r = await api.tenants.listTenants({ pageSize: 500, pageToken });
    all.push(...r.tenants);
    pageToken = r.nextPageToken;
  } while (pageToken);
  return all;
}

const Ctx = createContext<TenantScope>({ tenant: "", setTenant: () => {}, tenants: [], reloadTenants: () => {} });
const KEY = "floe.tenant";

export function TenantProvider({ children }: { children: ReactNode }) {
  const bound = leaf(getSession()?.tenant ?? "");
  const [tenant, setTenantState] = useState(bound || sessionStorage.getItem(KEY) || "");
  const [tenants, setTenants] = useState<Tenant[]>([]);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    listTenants().then((all) => {
      if (live) setTenants(all);
    }).catch(() => {
      // The pages show their own errors; the picker just stays empty.
    });
    return () => {
      live = false;
    };
  }, [tick]);
  const setTenant = (id: string) => {
    if (bound) return;
    sessionStorage.setItem(KEY, id);
    setTenantState(id);
  };
  return <Ctx.Provider value={{ tenant, setTenant, tenants, reloadTenants: () => setTick((t) => t + 1) }}>{children}</Ctx.Provider>;
}

export function useTenant(): TenantScope {
  return useContext(Ctx);
}
