import { PageHeader } from "../components/ui";

export function Keys() {
  return <PageHeader title="Keys" />;
}
