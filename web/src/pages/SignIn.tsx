import { useState, type FormEvent } from "react";
import { api } from "../api";
import { ErrorNote, Field } from "../components/ui";
import { useAction } from "../hooks";
import { sessionFromLogin, setSession } from "../session";

export function SignIn() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [touched, setTouched] = useState(false);
  const login = useAction(async () => {
    const r = await api.auth.login({ username: username.trim(), password });
    setSession(sessionFromLogin(r));
  });
  const userError = touched && !username.trim() ? "Enter your username." : undefined;
  const passError = touched && !password ? "Enter your password." : undefined;
  async function submit(e: FormEvent) {
    e.preventDefault();
    setTouched(true);
    if (!username.trim() || !password) return;
    await login.run();
  }
  return (
    <main className="signin">
      <form onSubmit={submit} noValidate aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to Floe</h1>
        <Field label="Username" error={userError}>
          {(p) => (
            <input {...p} name="username" autoComplete="username" autoFocus value={username} onChange={(e) => setUsername(e.target.value)} />
          )}
        </Field>
        <Field label="Password" error={passError}>
          {(p) => (
            <input {...p} name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} />
          )}
        </Field>
        <ErrorNote error={login.error} />
        <button type="submit" disabled={login.busy}>
          {login.busy ? "Signing in…" : "Sign in"}
        </button>
        <p className="muted small">
          <code>floe up</code> creates the user <code>admin</code>; its password is in <code>floe-data/admin.password</code>.
        </p>
      </form>
    </main>
  );
}
