import { EmptyState } from "../components/ui";
import { href } from "../router";

export function NotFound() {
  return (
    <EmptyState title="No such page">
      <p>
        Go to the <a href={href("overview")}>overview</a>.
      </p>
    </EmptyState>
  );
}
