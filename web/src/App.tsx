import { lazy, Suspense, useEffect, useState, type ReactNode } from "react";
import { api } from "./api";
import { isAdmin, onSession, getSession, setSession, type Session } from "./session";
import { href, useRoute } from "./router";
import { TenantProvider, useTenant } from "./tenant";
import { leaf } from "./format";
import { SignIn } from "./pages/SignIn";
import { Overview } from "./pages/Overview";
import { Tenants } from "./pages/Tenants";
import { NotFound } from "./pages/NotFound";
import { Loading } from "./components/ui";

// The larger pages load on first visit, so signing in and the overview stay quick.
const Datasets = lazy(() => import("./pages/Datasets").then((m) => ({ default: m.Datasets })));
const Keys = lazy(() => import("./pages/Keys").then((m) => ({ default: m.Keys })));
const Agents = lazy(() => import("./pages/Agents").then((m) => ({ default: m.Agents })));
const Query = lazy(() => import("./pages/Query").then((m) => ({ default: m.Query })));
const Dlq = lazy(() => import("./pages/Dlq").then((m) => ({ default: m.Dlq })));

const NAV: { id: string; label: string; adminOnly?: boolean }[] = [
  { id: "overview", label: "Overview" },
  { id: "tenants", label: "Tenants", adminOnly: true },
  { id: "datasets", label: "Datasets" },
  { id: "keys", label: "API keys" },
  { id: "agents", label: "Agents" },
  { id: "query", label: "Query" },
  { id: "dlq", label: "Dead letters" },
];

function page(section: string, rest: string[]): ReactNode {
  switch (section) {
    case "":
    case "overview":
      return <Overview />;
    case "tenants":
      return <Tenants />;
    case "datasets":
      return <Datasets path={rest} />;
    case "keys":
      return <Keys />;
    case "agents":
      return <Agents path={rest} />;
    case "query":
      return <Query />;
    case "dlq":
      return <Dlq />;
    default:
      return <NotFound />;
  }
}

function TenantPicker() {
  const { tenant, setTenant, tenants } = useTenant();
  const s = getSession();
  if (s?.tenant) return <span className="tenant-fixed">Tenant: {leaf(s.tenant)}</span>;
  return (
    <label className="tenant-picker">
      <span>Tenant</span>
      <select value={tenant} onChange={(e) => setTenant(e.target.value)} aria-label="Tenant">
        <option value="">All tenants</option>
        {tenants.map((t) => (
          <option key={t.name} value={leaf(t.name)}>
            {t.displayName || leaf(t.name)}
          </option>
        ))}
      </select>
    </label>
  );
}

function Shell({ session }: { session: Session }) {
  const route = useRoute();
  const [section = "overview", ...rest] = route.path;
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => setMenuOpen(false), [section]);
  async function signOut() {
    try {
      await api.auth.logout({ refreshToken: session.refreshToken });
    } catch {
      // The session ends here either way; the server forgets it when it expires.
    }
    setSession(null);
  }
  return (
    <TenantProvider>
      <a className="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <div className="shell">
        <header className="topbar">
          <button type="button" className="icon menu-toggle" aria-expanded={menuOpen} aria-controls="nav" onClick={() => setMenuOpen(!menuOpen)}>
            <span aria-hidden="true">☰</span>
            <span className="sr-only">Menu</span>
          </button>
          <a className="brand" href={href("overview")}>
            Floe
          </a>
          <TenantPicker />
          <div className="user">
            <span title={session.user}>{session.displayName}</span>
            <button type="button" className="secondary" onClick={signOut}>
              Sign out
            </button>
          </div>
        </header>
        <nav id="nav" className={"nav" + (menuOpen ? " open" : "")} aria-label="Sections">
          <ul>
            {NAV.filter((n) => !n.adminOnly || isAdmin(session)).map((n) => (
              <li key={n.id}>
                <a href={href(n.id)} aria-current={section === n.id ? "page" : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" tabIndex={-1}>
          <Suspense fallback={<Loading what="Loading the page" />}>{page(section, rest)}</Suspense>
        </main>
      </div>
    </TenantProvider>
  );
}

export function App() {
  const [session, setS] = useState<Session | null>(getSession());
  useEffect(() => onSession(setS), []);
  if (!session) return <SignIn />;
  return <Shell key={session.user} session={session} />;
}
