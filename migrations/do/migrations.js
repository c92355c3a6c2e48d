import journal from './meta/_journal.json';
import m0000 from './0000_init.sql';
import m0001 from './0001_sync.sql';
import m0002 from './0002_storage.sql';
import m0003 from './0003_compacted_pull.sql';
import m0004 from './0004_sync_quota.sql';
import m0005 from './0005_capabilities_intents.sql';
import m0006 from './0006_webhooks_service.sql';
import m0007 from './0007_drop_blob_provider.sql';
import m0008 from './0008_roster.sql';

  export default {
    journal,
    migrations: {
      m0000,
m0001,
m0002,
m0003,
m0004,
m0005,
m0006,
m0007,
m0008
    }
  }
  